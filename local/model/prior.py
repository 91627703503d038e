"""The plan prior: an autoregressive model over plan frames (local/audio/plan.py) that writes new plans.

A causal dilated convolution stack over frames (as the WaveNet is over samples), conditioned on the genre.
Input ``frames`` (batch, T, bands) float32 dB: frame t-1 at position t (the stack sees frames, never the one it
predicts), ``genre_id`` (batch,) int32. Output (batch, T, bands * 3 * mixtures): at position t the
parameters of frame t's distribution. Before a track's first frame the model reads :data:`FLOOR_DB` frames
(silence), :data:`LOOKBACK` frames' worth, so frame 0 has a distribution too (:func:`padded_plan`).

Layers (i = 0 .. layers - 1, dilation 2**i, width 2: receptive field 2**layers frames, 256 = 4.1 s at 62.5/s)
  ``prior_input``      Conv1D(channels, 1) of the frames, scaled from dB (/ 40 + 1: the floor at -1)
  ``prior_genre``      Embedding(n_genres, genre_channels)
  ``prior{i}_conv``    Conv1D(2*channels, 2, dilation 2**i, causal): filter and gate halves
  ``prior{i}_cond``    Dense(2*channels, no bias) of the genre embedding, added to both halves
  ``prior{i}_out``     Conv1D(channels, 1) of tanh(filter) * sigmoid(gate), dropout, added to the layer's input
  ``prior_head``       Conv1D(channels, 1) of relu(the stack's output), relu
  ``prior_params``     Conv1D(bands * 3 * mixtures, 1): per band and component a weight logit, a mean, a log scale

The likelihood (:func:`frame_nll`): per band a mixture of ``mixtures`` discretized logistics (Salimans et al.
2017, PixelCNN++) on bins of :data:`BIN_DB` dB from :data:`FLOOR_DB` to :data:`CEILING_DB`; the first and last
bins take the tails. Discretized because a plan is mostly floor: 30-80 % of the demo's band values are exactly
-80 dB, where a continuous density grows without bound. Bands are independent given the past (diagonal); a
frame's NLL is the sum over bands, in nats per frame. With ``frame_mixture`` the components are whole frames
instead: one weight per component (band 0's logits), each component a product of one logistic per band, so a
drawn frame takes all its bands from one component (a note's partials together, not each band's own choice).
"""
import dataclasses
import math

import numpy as np

from local.core.config import ConfigError, ModelSettings

KIND = "prior"
FLOOR_DB = -80.0  # local.audio.plan.FLOOR_DB: the plan's floor, the first bin
CEILING_DB = 10.0  # the last bin (and everything above it); the demo's loudest band reads -21 dB
BIN_DB = 0.5  # bin width of the discretized likelihood, dB
DB_SCALE = 40.0  # as the renderer's plan input (local/model/plan_net.py): dB / 40 + 1
MIN_LOG_SCALE = -7.0  # log of the smallest logistic scale, in units of DB_SCALE dB


@dataclasses.dataclass(frozen=True)
class PriorConfig(ModelSettings):
    """The one description of a prior: what :func:`build_prior` builds; ``to_json()`` is ``model.json``'s
    ``model`` dict (its ``plan_*`` keys are local.audio.plan.PlanSettings.model_keys())."""
    plan_bands: int = 80
    plan_hop: int = 256
    plan_n_fft: int = 1024
    plan_fmin: float = 30.0
    plan_fmax: float = 0.0
    channels: int = 64  # channels of the stack
    layers: int = 8  # dilations 1 .. 2**(layers - 1): receptive field 2**layers frames
    mixtures: int = 3  # logistic components per band
    genre_channels: int = 16
    dropout: float = 0.1  # on each layer's output while training
    input_noise: float = 4.0  # std of Gaussian noise on the input frames while training, dB (against exposure bias)
    window: int = 64  # frames scored per training example (each reads receptive_field - 1 more before them)
    n_genres: int = 1
    frame_mixture: bool = False  # one mixture over whole frames (a weight per component, shared by the bands)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise :class:`local.core.config.ConfigError` naming the stage-3 key that cannot work."""
        for key, low in (("channels", 1), ("layers", 1), ("mixtures", 1), ("genre_channels", 1), ("window", 1)):
            if int(getattr(self, key)) < low:
                raise ConfigError(f"--prior_{key}={getattr(self, key)}: must be at least {low}")
        if self.layers > 16:
            raise ConfigError(f"--prior_layers={self.layers}: at most 16 (a receptive field of 65,536 frames)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--prior_dropout={self.dropout}: must be in [0, 1)")
        if not (math.isfinite(self.input_noise) and self.input_noise >= 0):
            raise ConfigError(f"--prior_input_noise={self.input_noise}: must be a finite number of dB >= 0")

    @classmethod
    def from_config(cls, config, plan, n_genres=1):
        """From stage 3's config dict (its ``prior_*`` keys), the plan's PlanSettings and the number of genres."""
        return cls(**plan.model_keys(), channels=int(config["prior_channels"]), layers=int(config["prior_layers"]),
                   mixtures=int(config["prior_mixtures"]), genre_channels=int(config["prior_genre_channels"]),
                   dropout=float(config["prior_dropout"]), input_noise=float(config["prior_input_noise"]),
                   window=int(config["prior_window"]), n_genres=max(1, int(n_genres)),
                   frame_mixture=bool(config.get("prior_frame_mixture", False)))

    @property
    def dilations(self):
        return [2 ** i for i in range(self.layers)]

    @property
    def receptive_field(self):
        """Frames the output at a position depends on (that frame's input and the ones before): 2**layers."""
        return 1 + sum(self.dilations)

    @property
    def n_params_per_frame(self):
        return self.plan_bands * 3 * self.mixtures

    def plan_settings(self, sample_rate, quantization_channels):
        """The :class:`local.audio.plan.PlanSettings` this prior writes."""
        from local.audio.plan import PlanSettings
        return PlanSettings.from_model_keys(self.to_json(), sample_rate, quantization_channels)


# --- the network ----------------------------------------------------------------------------------------

def build_prior(config):
    """The prior (module docstring) as an uncompiled Keras functional model: (frames, genre_id) -> parameters."""
    import keras
    from keras import layers, ops
    frames = keras.Input(shape=(None, config.plan_bands), dtype="float32", name="frames")
    genre_id = keras.Input(shape=(), dtype="int32", name="genre_id")
    c = config.channels
    x = layers.Conv1D(c, 1, name="prior_input")(frames / DB_SCALE + 1.0)
    genre = layers.Embedding(config.n_genres, config.genre_channels, name="prior_genre")(genre_id)
    for i, d in enumerate(config.dilations):
        pre = layers.Conv1D(2 * c, 2, dilation_rate=d, padding="causal", name=f"prior{i}_conv")(x)
        pre = pre + ops.expand_dims(layers.Dense(2 * c, use_bias=False, name=f"prior{i}_cond")(genre), 1)
        gated = ops.tanh(pre[..., :c]) * ops.sigmoid(pre[..., c:])
        out = layers.Conv1D(c, 1, name=f"prior{i}_out")(gated)
        x = x + layers.Dropout(config.dropout, name=f"prior{i}_dropout")(out)
    h = layers.Conv1D(c, 1, activation="relu", name="prior_head")(ops.relu(x))
    params = layers.Conv1D(config.n_params_per_frame, 1, name="prior_params")(h)
    return keras.Model([frames, genre_id], params, name="prior")


def padded_plan(plan, receptive_field):
    """``plan`` (F, bands) with ``receptive_field`` floor frames in front: (receptive_field + F, bands) float32.
    Frame f of the track is row receptive_field + f; the model's input for it is the rows before it."""
    plan = np.asarray(plan, np.float32)
    return np.concatenate([np.full((receptive_field, plan.shape[1]), FLOOR_DB, np.float32), plan])


# --- the likelihood ---------------------------------------------------------------------------------------

def split_params(params, bands, mixtures):
    """(weight logits, means in dB, log scales in log-dB), each (..., bands, mixtures), of the network's output
    (..., bands * 3 * mixtures) (a numpy array or a tensor). Scales are at least exp(MIN_LOG_SCALE) * 40 dB."""
    from keras import ops
    p = ops.reshape(params, (*ops.shape(params)[:-1], bands, 3, mixtures))
    logits, means, log_scales = p[..., 0, :], p[..., 1, :], p[..., 2, :]
    log_scales = ops.maximum(log_scales, MIN_LOG_SCALE)
    return logits, (means - 1.0) * DB_SCALE, log_scales + math.log(DB_SCALE)


def band_log_probs(x_db, logits, means_db, log_scales_db):
    """log P(bin of x) per band: ``x_db`` (..., bands) dB; the mixture (..., bands, mixtures) of
    :func:`split_params`. Returns (..., bands) float32 nats. Values are put in their bin of BIN_DB dB (below
    the floor's bin half-width: the first bin; above the ceiling: the last)."""
    from keras import ops
    return ops.logsumexp(component_log_probs(x_db, means_db, log_scales_db) + ops.log_softmax(logits, axis=-1),
                         axis=-1)


def component_log_probs(x_db, means_db, log_scales_db):
    """log P(bin of x) per band under each component alone: ``x_db`` (..., bands); means and log scales (...,
    bands, mixtures) of :func:`split_params`. Returns (..., bands, mixtures) nats (bins as
    :func:`band_log_probs`)."""
    from keras import ops
    x = ops.clip(ops.cast(x_db, "float32"), FLOOR_DB, CEILING_DB)
    centre = FLOOR_DB + ops.round((x - FLOOR_DB) / BIN_DB) * BIN_DB
    centre = ops.expand_dims(centre, -1)
    inv_s = ops.exp(-log_scales_db)
    plus, minus = (centre + BIN_DB / 2 - means_db) * inv_s, (centre - BIN_DB / 2 - means_db) * inv_s
    log_cdf_plus = plus - ops.softplus(plus)  # log sigmoid(plus): the first bin
    log_one_minus_cdf_minus = -ops.softplus(minus)  # log (1 - sigmoid(minus)): the last bin
    mass = ops.sigmoid(plus) - ops.sigmoid(minus)
    mid = (centre - means_db) * inv_s
    # a bin far in a component's tail: sigmoid differences round to 0; use the density times the width
    log_pdf_mid = mid - log_scales_db - 2.0 * ops.softplus(mid) + math.log(BIN_DB)
    log_mass = ops.where(mass > 1e-5, ops.log(ops.maximum(mass, 1e-12)), log_pdf_mid)
    return ops.where(centre <= FLOOR_DB + BIN_DB / 4, log_cdf_plus,
                     ops.where(centre >= CEILING_DB - BIN_DB / 4, log_one_minus_cdf_minus, log_mass))


def frame_nll(params, frames_db, bands, mixtures, frame_mixture=False):
    """Negative log-likelihood of each frame in nats (sum over its bands): ``params`` (..., bands * 3 *
    mixtures) of the network, ``frames_db`` (..., bands) the frames they predict; returns (...,) float32.
    ``frame_mixture``: the components are whole frames, weighted by band 0's logits (module docstring)."""
    from keras import ops
    logits, means, log_scales = split_params(params, bands, mixtures)
    if not frame_mixture:
        return -ops.sum(band_log_probs(frames_db, logits, means, log_scales), axis=-1)
    per_component = ops.sum(component_log_probs(frames_db, means, log_scales), axis=-2)  # (..., mixtures)
    return -ops.logsumexp(per_component + ops.log_softmax(logits[..., 0, :], axis=-1), axis=-1)


def bin_centres():
    """Every bin's centre, dB: (n_bins,) float32 from FLOOR_DB to CEILING_DB (the likelihood's support)."""
    return (FLOOR_DB + BIN_DB * np.arange(int(round((CEILING_DB - FLOOR_DB) / BIN_DB)) + 1)).astype(np.float32)


# --- model.json ---------------------------------------------------------------------------------------------

def prior_model_json(prior_config, *, genres, sample_rate, quantization_channels, data_dir, renderer_dir=""):
    """The ``model.json`` dict of a prior run: ``kind`` (prior), ``model`` (PriorConfig.to_json, with the plan_*
    keys), genres (index = genre_id), sample_rate (Hz), quantization_channels, receptive_field (frames),
    data_dir and the renderer run it shares its plan with ("" = none)."""
    return {"kind": KIND, "model": prior_config.to_json(), "genres": list(genres), "sample_rate": int(sample_rate),
            "quantization_channels": int(quantization_channels), "receptive_field": prior_config.receptive_field,
            "data_dir": str(data_dir), "renderer_dir": str(renderer_dir or "")}
