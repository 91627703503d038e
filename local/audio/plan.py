"""The plan: what a clip plays, decided at a low rate (log-mel frames), which the renderer (a WaveNet locally
conditioned on it) plays sample by sample and the prior writes anew (docs/plan.md).

One function, :func:`plan_frames`, turns audio as the model hears it (the decoded mu-law codes) into plan
frames; training windows, stage 4's ``--plan`` values, the judge's plan fidelity, the prior and the Spark job
all call it with the :class:`PlanSettings` of their run, so they compute the same plan. The settings are
model keys (``plan_bands``, ``plan_hop``, ``plan_n_fft``, ``plan_fmin``, ``plan_fmax``: model.json's
``model`` dict, with the run's ``sample_rate`` and ``quantization_channels``).

Frames and samples: frame f is centred on sample f * hop (librosa's ``center=True``, zero-padded at the
ends), so a track of n samples has 1 + n // hop frames and sample t plays frame t // hop.
"""
import dataclasses

import numpy as np

from local.core.config import ConfigError

# the floor of a band in dB (power 1e-8): silence; the quietest demo pads sit about 30 dB above it
FLOOR_DB = -80.0


@dataclasses.dataclass(frozen=True)
class PlanSettings:
    """How plan frames are computed (every field a model key of the run, see the module docstring).

    bands        mel bands per frame
    hop          samples per frame (frames/s = sample_rate / hop)
    n_fft        samples of each frame's FFT window (Hann)
    fmin, fmax   the mel filterbank's range in Hz (fmax 0 = sample_rate / 2)
    sample_rate  Hz of the codes
    quantization_channels  Q of the mu-law codes
    """
    bands: int = 80
    hop: int = 256
    n_fft: int = 1024
    fmin: float = 30.0
    fmax: float = 0.0
    sample_rate: int = 16000
    quantization_channels: int = 256

    def __post_init__(self):
        for key, low in (("bands", 1), ("hop", 1), ("n_fft", 16)):
            if int(getattr(self, key)) < low:
                raise ConfigError(f"--plan_{key}={getattr(self, key)}: must be at least {low}")
        if not 0 <= self.fmin < (self.fmax or self.sample_rate / 2) <= self.sample_rate / 2:
            raise ConfigError(f"--plan_fmin={self.fmin} / --plan_fmax={self.fmax}: expected 0 <= fmin < fmax <= "
                              f"{self.sample_rate / 2:g} Hz (half the sample rate; fmax 0 means that)")

    @property
    def frames_per_second(self):
        return self.sample_rate / float(self.hop)

    def n_frames(self, n_samples):
        """Frames of a track of ``n_samples``: 1 + n_samples // hop."""
        return 1 + int(n_samples) // self.hop

    def frames_covering(self, n_samples):
        """Frames that samples 0 .. n_samples - 1 play: (n_samples - 1) // hop + 1 (0 for no sample)."""
        return (int(n_samples) - 1) // self.hop + 1 if n_samples > 0 else 0

    def model_keys(self):
        """The ``plan_*`` model keys (model.json's ``model`` dict) that describe these settings."""
        return {"plan_bands": self.bands, "plan_hop": self.hop, "plan_n_fft": self.n_fft, "plan_fmin": self.fmin,
                "plan_fmax": self.fmax}

    @classmethod
    def from_model_keys(cls, keys, sample_rate, quantization_channels):
        """From a dict with ``plan_*`` keys (a model dict or a stage config), or None when ``plan_bands`` is 0."""
        if not int(keys.get("plan_bands", 0)):
            return None
        return cls(bands=int(keys["plan_bands"]), hop=int(keys.get("plan_hop", cls.hop)),
                   n_fft=int(keys.get("plan_n_fft", cls.n_fft)), fmin=float(keys.get("plan_fmin", cls.fmin)),
                   fmax=float(keys.get("plan_fmax", cls.fmax)), sample_rate=int(sample_rate),
                   quantization_channels=int(quantization_channels))

    def differences(self, other):
        """The keys in which ``other`` (PlanSettings or None) differs, as 'key mine/theirs' strings."""
        if other is None:
            return ["plan_bands %d/none" % self.bands]
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [f"{k} {mine[k]}/{theirs[k]}" for k in mine if mine[k] != theirs[k]]


def plan_of_audio(y, settings):
    """Plan frames of float audio ``y`` (n,) in [-1, 1] at ``settings.sample_rate``: (1 + n // hop, bands)
    float32 log-mel power in dB (librosa's mel spectrogram, Hann window, centred frames, zero-padded ends),
    floored at :data:`FLOOR_DB`. The power is scaled by the window's energy, so a band's dB do not depend on
    n_fft: a full-scale sine reads about -15 dB in its band."""
    import librosa
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    mel = librosa.feature.melspectrogram(y=y, sr=settings.sample_rate, n_fft=settings.n_fft, hop_length=settings.hop,
                                         n_mels=settings.bands, fmin=settings.fmin,
                                         fmax=settings.fmax or settings.sample_rate / 2.0, center=True,
                                         pad_mode="constant")
    mel *= (2.0 / (settings.n_fft / 2.0)) ** 2  # the Hann window sums to n_fft / 2
    return np.maximum(10.0 * np.log10(np.maximum(mel, 1e-30)), FLOOR_DB).T.astype(np.float32)


def plan_frames(codes, settings):
    """THE plan: frames of mu-law ``codes`` (n,) as the model hears them (decoded first): (1 + n // hop,
    bands) float32 log-mel dB (:func:`plan_of_audio`). Frame f depends on codes f*hop - n_fft/2 ..
    f*hop + n_fft/2 - 1 only, so the frames of a slice that starts on a frame equal the track's (away from
    the slice's ends)."""
    from local.audio.waveform import mu_law_decode
    return plan_of_audio(mu_law_decode(codes, settings.quantization_channels), settings)


def plan_window(track_plan, first_frame, n_frames, width):
    """The plan frames a window of the renderer reads: frames ``first_frame - width`` .. ``first_frame +
    n_frames + width - 1`` of ``track_plan`` (F, bands), the track's first and last frame repeated past its
    ends: (n_frames + 2 * width, bands) float32."""
    index = np.clip(np.arange(first_frame - width, first_frame + n_frames + width), 0, len(track_plan) - 1)
    return np.asarray(track_plan, dtype=np.float32)[index]


def plan_distance_db(a, b):
    """Root-mean-square difference in dB of two plans (F, bands) over their common frames: a scalar (the
    plan fidelity figure: the plan a clip was given against the plan of the clip it made)."""
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("plan_distance_db: a plan without frames")
    return float(np.sqrt(np.mean((np.asarray(a[:n], np.float64) - np.asarray(b[:n], np.float64)) ** 2)))


def check_plan_array(frames, settings, name):
    """A plan read from a file: (F, bands) finite float32, or ConfigError naming ``name``."""
    frames = np.asarray(frames)
    if frames.ndim != 2 or frames.shape[1] != settings.bands or not np.issubdtype(frames.dtype, np.floating):
        raise ConfigError(f"{name}: expected a plan of (frames, {settings.bands}) floats, got {frames.dtype} "
                          f"{tuple(frames.shape)}: write it with run_model_predictions.py (a clip's .plan.npy)")
    if not np.isfinite(frames).all():
        raise ConfigError(f"{name}: the plan holds NaN or infinite values")
    return frames.astype(np.float32)
