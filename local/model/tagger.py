"""The genre tagger: a sample-level CNN on raw waveforms (Lee et al. 2017), sized for a CPU, and its training.

Lee, Park, Kim, Nam (2017), "Sample-level deep convolutional neural networks for music auto-tagging using
raw waveforms": the network sees the samples themselves. A first convolution of 3 taps with stride 3, then
blocks of conv(3) + batch norm + ReLU + max-pool(3), each dividing the time axis by 3, so an input of
3^n samples shrinks to one frame after n - 1 blocks. The paper uses 59,049 samples and 128..512 channels;
here 3^9 = 19,683 samples (1.23 s at 16 kHz) and 16..128 channels, about 15 M multiply-adds per window, so
it trains on 2 CPU cores in about a minute on the demo dataset.

Input ``waveform`` (batch, input_samples) float32 in [-1, 1]: the mu-law codes of the dataset expanded back
to samples (:func:`codes_to_waveform`). Layers::

    conv0 (stride 3) + conv0_bn + ReLU
    block{i}_conv (3 taps) + block{i}_bn + ReLU + block{i}_pool (3)      i = 1 .. len(channels) - 1
    pool (global average of what is left; one frame at the default sizes) + dropout
    embedding  Dense(embedding_size, ReLU): the vector judge.py compares (similar tracks, Frechet distance)
    logits     Dense(n_genres)

Training reads the same Parquet dataset through the same streaming window reader as the WaveNet
(:class:`local.dataset.windows.TrainStream`, bounded memory: ``cache_tracks`` tracks at a time), one example = one
window of ``input_samples`` codes of a train track and its ``genre_id``; with ``tagger_balanced`` (the default)
the windows are drawn so every genre is seen equally often (:class:`local.dataset.windows.GenreBalancedStream`).

The transfer mode (``tagger_features=mtt``) trains only a small head (:func:`build_head`: one hidden layer, the
``embedding``) on the penultimate-layer embeddings of musicnn's pretrained MagnaTagATune network
(local/judge/pretrained.py), one 3 s patch per example, balanced over genres; the dataset's embeddings are computed
once and cached in ``run_dir/features/``. Its run directory is used like the waveform tagger's (judge.py). It trains through the one loop,
:func:`local.train.loop.train`, with :func:`tagger_task` (so resume, checkpoints, the time budget, metrics.csv,
loss.png and TensorBoard are the WaveNet's), and writes the same run-directory files. A track's genre = the argmax of the mean of its windows'
probabilities (:func:`track_predictions`); ``evaluation.json`` holds that accuracy and the balanced accuracy
(mean of per-genre recall) on the valid and test tracks, per genre, and each split's majority-class baseline; a
split of fewer than two genres gets no figure (:func:`figure_refused`).
"""
import dataclasses
import math
import os

import numpy as np

from local.audio.waveform import mu_law_decode
from local.core.config import ConfigError, ModelSettings, StageError, check_minimums
from local.store import rundir
from local.store.layout import RunDir

KIND = "tagger"
FEATURES = ("waveform", "mtt")  # tagger_features: raw samples, or musicnn's MagnaTagATune embeddings (local/judge/pretrained.py)
WINDOWS_PER_VISIT = 16  # balanced sampling: windows drawn from a track each time the stream visits it
EMBEDDING_LAYER = "embedding"
DEFAULT_CHANNELS = (16, 16, 32, 32, 64, 64, 128, 128, 128)
# Keras's 0.99 leaves the inference statistics far from the data after a run of a few hundred steps: valid
# loss rose while train loss fell at step 60 of the demo; 0.9 averages over ~10 steps.
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class TaggerConfig(ModelSettings):
    """The one description of a tagger: what :func:`build_tagger` builds; ``to_json()`` is ``model.json``'s
    ``model`` dict."""
    input_samples: int = 3 ** 9  # samples per window (19,683 = 1.23 s at 16 kHz)
    channels: tuple = DEFAULT_CHANNELS  # channels of conv0, then of each block
    embedding_size: int = 64  # size of the embedding layer
    dropout: float = 0.3  # dropout before the embedding and before the logits
    n_genres: int = 1
    features: str = "waveform"  # waveform: the CNN above on samples | mtt: a head on pretrained embeddings
    feature_size: int = 0  # with pretrained features: the size of one patch's embedding (the head's input)
    balanced: bool = True  # tagger_balanced: training windows drawn so every genre is seen equally often

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        self.validate()

    def validate(self):
        """Raise :class:`local.core.config.ConfigError` naming the stage-3 key that cannot work."""
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"--tagger_channels={','.join(map(str, self.channels))}: need at least one channel "
                              f"count, each >= 1 (e.g. 16,16,32,32,64)")
        if self.input_samples < 3 ** len(self.channels):
            raise ConfigError(f"--tagger_input_samples={self.input_samples}: {len(self.channels)} convolutions each "
                              f"divide time by 3, so it must be at least 3^{len(self.channels)} = "
                              f"{3 ** len(self.channels)} (or pass fewer --tagger_channels)")
        if self.embedding_size < 1:
            raise ConfigError(f"--tagger_embedding_size={self.embedding_size}: must be at least 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--tagger_dropout={self.dropout}: must be in [0, 1)")
        if self.features not in FEATURES:
            raise ConfigError(f"--tagger_features={self.features}: must be one of {', '.join(FEATURES)} (waveform: "
                              f"train the whole network on samples; mtt: a small head on pretrained embeddings)")

    @classmethod
    def from_config(cls, config, n_genres=1):
        """From stage 3's config dict (its ``tagger_*`` keys) and the dataset's number of genres."""
        return cls(input_samples=int(config["tagger_input_samples"]), channels=tuple(config["tagger_channels"]),
                   embedding_size=int(config["tagger_embedding_size"]), dropout=float(config["tagger_dropout"]),
                   n_genres=max(1, int(n_genres)), features=str(config.get("tagger_features", "waveform")),
                   balanced=bool(config.get("tagger_balanced", cls.balanced)))

    @property
    def pretrained(self):
        """True when the tagger is a head on pretrained embeddings (``features`` other than waveform)."""
        return self.features != "waveform"


    @property
    def chance_bits(self):
        """log2(n_genres): the cross-entropy of a tagger that knows nothing, bits per window."""
        return math.log2(max(self.n_genres, 1))


def check_config(config):
    """The tagger's stage-3 keys (``tagger_*``), before any data is read; ConfigError naming one key."""
    check_minimums(config, {"tagger_steps": 0, "tagger_batch_size": 1, "tagger_eval_windows": 1})
    TaggerConfig.from_config(config)


def build_tagger(config):
    """The tagger (see the module docstring) as an uncompiled Keras functional model: waveform -> logits."""
    import keras
    from keras import layers

    waveform = keras.Input(shape=(config.input_samples,), dtype="float32", name="waveform")
    x = layers.Reshape((config.input_samples, 1), name="samples")(waveform)
    x = layers.Conv1D(config.channels[0], 3, strides=3, use_bias=False, name="conv0")(x)
    x = layers.ReLU(name="conv0_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name="conv0_bn")(x))
    for i, channels in enumerate(config.channels[1:], start=1):
        x = layers.Conv1D(channels, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.ReLU(name=f"block{i}_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn")(x))
        x = layers.MaxPooling1D(3, name=f"block{i}_pool")(x)
    x = layers.Dropout(config.dropout, name="pool_dropout")(layers.GlobalAveragePooling1D(name="pool")(x))
    embedding = layers.Dense(config.embedding_size, activation="relu", name=EMBEDDING_LAYER)(x)
    logits = layers.Dense(config.n_genres, name="logits")(layers.Dropout(config.dropout, name="dropout")(embedding))
    return keras.Model(waveform, logits, name="tagger")


def readout_model(model):
    """A model giving (embeddings (B, embedding_size), logits (B, n_genres)) of a trained tagger."""
    import keras
    return keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.outputs[0]])


# --- windows and waveforms (numpy) ---------------------------------------------------------------------

def mu_law_table(quantization_channels=256):
    """The sample value of each code: (Q,) float32, = :func:`local.audio.waveform.mu_law_decode` of 0..Q-1."""
    return mu_law_decode(np.arange(quantization_channels), quantization_channels)


def codes_to_waveform(codes, quantization_channels=256):
    """Mu-law codes (any shape, ints 0..Q-1) -> float32 samples in [-1, 1] of the same shape."""
    return mu_law_table(quantization_channels)[np.asarray(codes, dtype=np.int64)]


def window_starts(n_samples, input_samples, max_windows):
    """Starts of up to ``max_windows`` windows of ``input_samples`` spread evenly over a track: (k,) int64.

    Non-overlapping when the track holds that many; one window at 0 when it is shorter than a window
    (:func:`track_windows` pads it). The same track always gives the same starts.
    """
    count = max(1, min(int(max_windows), int(n_samples) // int(input_samples)))
    last = max(0, int(n_samples) - int(input_samples))
    return np.unique(np.linspace(0, last, num=count).round().astype(np.int64))


def track_windows(codes, input_samples, max_windows, quantization_channels=256):
    """The windows of one track's codes (:func:`window_starts`): (k, input_samples) int32; a track shorter
    than a window is padded with the silence code (Q // 2)."""
    codes = np.asarray(codes)
    if len(codes) < input_samples:
        codes = np.concatenate([codes, np.full(input_samples - len(codes), quantization_channels // 2, codes.dtype)])
    starts = window_starts(len(codes), input_samples, max_windows)
    return codes[starts[:, None] + np.arange(input_samples)[None, :]].astype(np.int32)


def softmax(logits):
    """Softmax over the last axis, float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def analyze(readout, code_arrays, *, input_samples, max_windows, quantization_channels=256, batch_windows=32,
            progress=None):
    """Window embeddings and genre probabilities of several code arrays (tracks or clips).

    readout      :func:`readout_model` of a tagger
    code_arrays  a list of (n_i,) int code arrays
    Returns a list, one per array, of (embeddings (k_i, embedding_size) float32, probabilities (k_i, n_genres)
    float64) over its windows (:func:`track_windows`). Every forward pass has ``batch_windows`` rows (the last
    padded), so the graph is traced once.
    """
    windows = [track_windows(c, input_samples, max_windows, quantization_channels) for c in code_arrays]
    flat = np.concatenate(windows) if windows else np.zeros((0, input_samples), np.int32)
    table = mu_law_table(quantization_channels)
    embeddings, logits = [], []
    for first in range(0, len(flat), batch_windows):
        batch = flat[first:first + batch_windows]
        padded = np.concatenate([batch, np.repeat(batch[-1:], batch_windows - len(batch), axis=0)])
        e, z = readout.predict_on_batch(table[padded])
        embeddings.append(np.asarray(e)[:len(batch)])
        logits.append(np.asarray(z)[:len(batch)])
        if progress is not None:
            progress.update(len(batch))
    embeddings = np.concatenate(embeddings) if embeddings else np.zeros((0, 1), np.float32)
    probabilities = softmax(np.concatenate(logits)) if logits else np.zeros((0, 1))
    bounds = np.cumsum([0] + [len(w) for w in windows])
    return [(embeddings[a:b].astype(np.float32), probabilities[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def track_predictions(readout, rows, read_codes, *, input_samples, max_windows, quantization_channels=256):
    """Mean window probabilities of each dataset row: (len(rows), n_genres) float64, a few tracks at a time."""
    out = []
    for first in range(0, len(rows), 8):
        codes = [read_codes(row) for row in rows[first:first + 8]]
        out += [p.mean(axis=0) for _, p in analyze(readout, codes, input_samples=input_samples,
                                                   max_windows=max_windows,
                                                   quantization_channels=quantization_channels)]
    return np.asarray(out).reshape(len(rows), -1)


def build_head(config):
    """The transfer-mode tagger: one hidden layer on a patch's pretrained embedding, as an uncompiled Keras
    model ``features (B, feature_size) -> logits (B, n_genres)``; its hidden layer is the ``embedding`` layer
    (:func:`readout_model`) judge.py compares::

        features (feature_size) + dropout
        embedding  Dense(embedding_size, ReLU) + dropout
        logits     Dense(n_genres)
    """
    import keras
    from keras import layers
    features = keras.Input(shape=(config.feature_size,), dtype="float32", name="features")
    x = layers.Dropout(config.dropout, name="features_dropout")(features)
    embedding = layers.Dense(config.embedding_size, activation="relu", name=EMBEDDING_LAYER)(x)
    logits = layers.Dense(config.n_genres, name="logits")(layers.Dropout(config.dropout, name="dropout")(embedding))
    return keras.Model(features, logits, name="tagger_head")


def readout_features(readout, feature_arrays, batch_patches=64):
    """(embeddings, probabilities) of each (k_i, D) array of patch features through :func:`readout_model`; every
    forward pass has ``batch_patches`` rows (the last padded), so the graph is traced once."""
    flat = np.concatenate(feature_arrays).astype(np.float32) if feature_arrays else np.zeros((0, 1), np.float32)
    embeddings, logits = [], []
    for first in range(0, len(flat), batch_patches):
        batch = flat[first:first + batch_patches]
        e, z = readout.predict_on_batch(np.concatenate([batch, np.repeat(batch[-1:], batch_patches - len(batch), 0)]))
        embeddings.append(np.asarray(e)[:len(batch)])
        logits.append(np.asarray(z)[:len(batch)])
    embeddings = np.concatenate(embeddings) if embeddings else np.zeros((0, 1), np.float32)
    probabilities = softmax(np.concatenate(logits)) if logits else np.zeros((0, 1))
    bounds = np.cumsum([0] + [len(f) for f in feature_arrays])
    return [(embeddings[a:b].astype(np.float32), probabilities[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


# --- model.json ---------------------------------------------------------------------------------------

def tagger_model_json(tagger_config, *, genres, sample_rate, data_dir, decode):
    """The ``model.json`` dict of a tagger run: ``kind`` (tagger), ``model`` (TaggerConfig.to_json), genres
    (index = genre_id), sample_rate (Hz), quantization_channels, input_samples, data_dir and ``decode``: stage 2's
    decode settings of its dataset (local.audio.decoding.DecodeSettings), so files are tagged as the dataset was
    made."""
    return {"kind": KIND, "model": tagger_config.to_json(), "genres": list(genres), "sample_rate": int(sample_rate),
            "quantization_channels": int(decode.quantization_channels),
            "input_samples": int(tagger_config.input_samples), "data_dir": str(data_dir),
            "decode": dataclasses.asdict(decode)}


def read_tagger_run(run_dir):
    """(TaggerConfig, model.json dict) of a trained tagger run: the one way a tagger's structure is read back
    (a WaveNet's: :func:`local.train.runner.read_run_model`). StageError (one line) when ``run_dir`` is none."""
    for path in RunDir(run_dir).model_files():
        if not os.path.isfile(path):
            raise StageError(f"{path} is missing: {run_dir!r} is not a trained tagger run "
                             f"(train one with run_model_training.py --model=tagger --run_dir={run_dir})")
    info = rundir.read_model_json(run_dir)
    if rundir.run_kind(info) != KIND:
        raise StageError(f"{run_dir!r} is a {rundir.run_kind(info)} run, not a tagger: train one with "
                         f"run_model_training.py --model=tagger and pass its run_dir")
    return TaggerConfig.from_json(info["model"]), info

