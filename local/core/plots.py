"""Pictures a person would rather look at: loss curves and spectrograms, written as PNG files atomically."""
import os

import numpy as np

from local.core.fileio import atomic_path


def _figure():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    """Save a matplotlib figure to ``path`` through a temp file and a rename, then close it."""
    plt = _figure()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def plot_loss(path, *, steps, train_bits, valid_steps, valid_bits, baseline_bits=None, title="WaveNet loss",
              ylabel="bits per sample"):
    """Train and valid loss in bits (per ``ylabel``'s unit) against the training step; ``baseline_bits`` (the
    uniform guess) as a dashed line."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if len(steps):
        ax.plot(steps, train_bits, label="train", color="tab:blue", alpha=0.8)
    if len(valid_steps):
        ax.plot(valid_steps, valid_bits, "o-", label="valid", color="tab:orange")
    if baseline_bits is not None:
        ax.axhline(baseline_bits, ls="--", color="grey", lw=1, label=f"uniform ({baseline_bits:g} bits)")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_spectrogram(y, sample_rate, path, title="", figsize=(8, 4), colorbar=True, plan=None, plan_rate=None):
    """A log-magnitude spectrogram (dB, 1024-sample STFT) of mono float audio ``y`` (n_samples,).

    figsize: inches at 100 dpi (the report's table cells use (4, 2.2) without the colorbar). ``plan`` (F, bands)
    log-mel dB at ``plan_rate`` frames/s: drawn above the spectrogram on the same time axis (what the clip was
    told to play, over what it played).
    """
    if plan is not None:
        return _plot_plan_and_spectrogram(y, sample_rate, path, title, figsize, plan, plan_rate)
    import librosa
    import librosa.display
    plt = _figure()
    y = np.asarray(y, dtype=np.float32)
    n_fft = 1024 if len(y) >= 1024 else max(16, 2 ** int(np.log2(max(len(y), 2))))
    spectrum = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=n_fft // 4))
    db = librosa.amplitude_to_db(spectrum, ref=np.max(spectrum) if spectrum.size and spectrum.max() > 0 else 1.0)
    fig, ax = plt.subplots(figsize=figsize)
    image = librosa.display.specshow(db, sr=sample_rate, hop_length=n_fft // 4, x_axis="time", y_axis="hz",
                                     ax=ax, cmap="magma")
    if colorbar:
        fig.colorbar(image, ax=ax, format="%+2.0f dB")
    ax.set_title(title or os.path.basename(path))
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_plan_and_spectrogram(y, sample_rate, path, title, figsize, plan, plan_rate):
    import librosa
    import librosa.display
    plt = _figure()
    y = np.asarray(y, dtype=np.float32)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(figsize[0], figsize[1] * 1.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 2]})
    plan = np.asarray(plan, np.float32)
    top.imshow(plan.T, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=max(-20.0, float(plan.max())),
               extent=(0, len(plan) / float(plan_rate), 0, plan.shape[1]))
    top.set_ylabel("plan band")
    top.set_title(title or os.path.basename(path))
    n_fft = 1024 if len(y) >= 1024 else max(16, 2 ** int(np.log2(max(len(y), 2))))
    spectrum = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=n_fft // 4))
    db = librosa.amplitude_to_db(spectrum, ref=np.max(spectrum) if spectrum.size and spectrum.max() > 0 else 1.0)
    librosa.display.specshow(db, sr=sample_rate, hop_length=n_fft // 4, x_axis="time", y_axis="hz", ax=bottom,
                             cmap="magma")
    fig.tight_layout()
    return save_figure(fig, path)
