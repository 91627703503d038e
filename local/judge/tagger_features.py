"""A transfer-mode tagger's features: the pretrained MagnaTagATune network's patch embeddings of dataset
tracks and files, cached per dataset.
"""
import hashlib
import os

import numpy as np

from local.core.fileio import atomic_write
from local.judge import pretrained
from local.model.tagger import codes_to_waveform, readout_features
from local.store import dataset_files

# --- transfer mode: a small head on pretrained embeddings (tagger_features=mtt) ----------------------------

MAX_PATCHES = 16  # pretrained patches (3 s each, evenly spread) per track or file: training, evaluation, tagging, judge
FEATURE_BATCH_TRACKS = 4  # tracks whose patches go through the pretrained network together


def pretrained_features(name):
    """The feature function of musicnn's pretrained tagger ``name`` (local/judge/pretrained.py; loaded once per
    process): ``features(waveforms, sample_rate, max_patches) -> [(k_i, D) float32]``, one array of patch
    embeddings (the penultimate layer, D = ``features.size``) per mono float waveform in [-1, 1] at
    ``sample_rate`` Hz (resampled to the network's 16 kHz inside)."""
    model = pretrained.load(name)  # StageError (one line) when musicnn's files are not installed

    def features(waveforms, sample_rate, max_patches=MAX_PATCHES):
        return [np.asarray(e, np.float32) for e, _ in model.analyze(list(waveforms), sample_rate, max_patches)]
    features.size = int(model.embedding_size)
    return features


FEATURE_FUNCTIONS = {"mtt": pretrained_features}  # tagger_features -> factory(name); tests swap in a stand-in


def feature_function(name):
    """The feature function of ``tagger_features`` = ``name`` (see :func:`pretrained_features`)."""
    return FEATURE_FUNCTIONS[name](name)


def code_features(features, code_arrays, *, sample_rate, max_patches, quantization_channels=256):
    """Patch embeddings of code arrays: [(k_i, D) float32], the codes expanded to samples first."""
    return features([codes_to_waveform(c, quantization_channels) for c in code_arrays], sample_rate, max_patches)


def analyze_features(readout, features, code_arrays, *, sample_rate, max_windows, quantization_channels=256,
                     progress=None):
    """:func:`analyze` for a transfer-mode tagger: per code array, (embeddings (k, embedding_size), probabilities
    (k, n_genres)) of its up to ``max_windows`` pretrained patches."""
    out = []
    for first in range(0, len(code_arrays), FEATURE_BATCH_TRACKS):
        chunk = code_arrays[first:first + FEATURE_BATCH_TRACKS]
        out += readout_features(readout, code_features(features, chunk, sample_rate=sample_rate,
                                                       max_patches=max_windows,
                                                       quantization_channels=quantization_channels))
        if progress is not None:
            progress.update(len(chunk))
    return out


def spread(array, count):
    """At most ``count`` rows of ``array``, evenly spread (the rows local.judge.pretrained.patches keeps)."""
    if count <= 0 or len(array) <= count:
        return array
    return array[np.unique(np.linspace(0, len(array) - 1, num=count).round().astype(int))]


def dataset_features(features, rows, *, name, sample_rate, quantization_channels, cache_dir,
                     read_codes=None, progress=True):
    """{track_id: (k, D) float32} patch embeddings of the dataset ``rows`` (up to MAX_PATCHES per track),
    cached in ``cache_dir/<fingerprint>.npz``: the fingerprint covers the feature name, MAX_PATCHES and each
    row's track_id, n_samples and source_sha256, so a changed dataset is embedded again."""
    from tqdm import tqdm

    read_codes = read_codes or dataset_files.read_track_codes
    rows = sorted(rows, key=lambda r: str(r["track_id"]))
    digest = hashlib.sha256(f"{name}/{MAX_PATCHES}/{sample_rate}".encode())
    for row in rows:
        digest.update(repr((str(row["track_id"]), int(row["n_samples"]), row.get("source_sha256"))).encode())
    path = os.path.join(cache_dir, f"{digest.hexdigest()[:16]}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as cached:
                bounds = np.cumsum([0] + cached["counts"].tolist())
                return {str(t): cached["features"][a:b] for t, a, b in zip(cached["track_id"], bounds[:-1], bounds[1:])}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache is computed again
    out = {}
    bar = tqdm(total=len(rows), desc=f"{name} embeddings of {len(rows)} tracks", unit="track", disable=not progress)
    for first in range(0, len(rows), FEATURE_BATCH_TRACKS):
        chunk = rows[first:first + FEATURE_BATCH_TRACKS]
        arrays = code_features(features, [read_codes(r) for r in chunk], sample_rate=sample_rate,
                               max_patches=MAX_PATCHES, quantization_channels=quantization_channels)
        out.update({str(r["track_id"]): a for r, a in zip(chunk, arrays)})
        bar.update(len(chunk))
    bar.close()
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, track_id=np.asarray(list(out)), counts=np.asarray([len(a) for a in out.values()], np.int64),
                 features=np.concatenate(list(out.values())).astype(np.float32))
    return out
