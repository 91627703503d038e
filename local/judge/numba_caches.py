"""Compile librosa's cached numba functions the stages use, in one process, once per install (``make setup``).

librosa's ``@guvectorize(cache=True)`` functions write two cache files per variant; when two processes compile
the same variant at once (stage 2's worker pool, Spark's executors) the pair can come from different processes
and the next process that loads it crashes with a segmentation fault (numba issue 10128; librosa issue 1998:
make demo's stage 4 died so in its onset detection). Compiled here first, every later process only reads them.

Run: ``python -m local.judge.numba_caches`` (prints one line).
"""
import time

import numpy as np


def warm():
    """Run each librosa path of local/ once on a short float32 signal: the plan, the judge's flatness and onsets,
    trimming, mu-law, the spectrograms; returns the seconds it took."""
    from local.audio.plan import PlanSettings, plan_of_audio
    from local.audio.waveform import mu_law_decode, mu_law_encode, trim_silence
    from local.judge.figures import onset_rate, spectral_flatness
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(np.arange(32000) / 5.0) * (np.arange(32000) % 4000 < 800) + 0.01 * rng.standard_normal(32000))
    y = y.astype(np.float32)
    plan_of_audio(y, PlanSettings())
    onset_rate(y, 16000)
    spectral_flatness(y)
    trim_silence(y)
    mu_law_decode(mu_law_encode(y))
    import librosa
    librosa.amplitude_to_db(np.abs(librosa.stft(y, n_fft=1024, hop_length=256)))
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"librosa's numba caches ready ({warm():.1f} s)")
