"""Statistics of mu-law codes: histograms and the entropy in bits of a code distribution (the unigram
baseline every bits/sample figure is read against).
"""

import numpy as np


def code_histogram(code_arrays, quantization_channels=256):
    """Counts of each code 0..Q-1 over a list of code arrays; (Q,) int64."""
    counts = np.zeros(quantization_channels, np.int64)
    for codes in code_arrays:
        counts += np.bincount(np.asarray(codes, np.int64), minlength=quantization_channels)[:quantization_channels]
    return counts


def entropy_bits(counts):
    """Entropy in bits of the distribution ``counts`` / sum (the unigram baseline on its own data)."""
    p = np.asarray(counts, np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def cross_entropy_bits(test_counts, train_counts):
    """Bits/sample of the test codes under the train histogram (add-one smoothed, so no code costs infinity)."""
    q = np.asarray(train_counts, np.float64) + 1.0
    q /= q.sum()
    test = np.asarray(test_counts, np.float64)
    return float(-(test * np.log2(q)).sum() / max(test.sum(), 1.0))
