"""The WaveNet: causal dilated convolutions, gated units, residual and skip paths, optional genre conditioning.

Built from standard Keras 3 layers only, so ``model.save`` / ``keras.models.load_model`` round-trip it and a
Spark executor can rebuild it from ``model.to_json()``. Layer names are part of the interface: the fast
generator (``local/generate/fast.py``) reads the weights by these names.

Inputs
  ``codes``    (batch, time) int32 mu-law codes 0..Q-1
  ``genre_id`` (batch,) int32, only when ``genre_conditioning``
Output
  logits (batch, time, Q): at position t, the distribution of the code at t+1 given codes[..t].

Layers (i = 0..n_layers-1)
  ``input_embedding``  Embedding(Q, residual_channels): a one-hot input times a 1x1 conv, without the one-hot
  ``genre_embedding``  Embedding(n_genres, genre_channels)                    (conditioning only)
  ``layer{i}_conv``    Conv1D(2*dilation_channels, filter_width, dilation_rate=dilations[i], causal):
                       the first half of the channels is the filter, the second half the gate
  ``layer{i}_cond``    Dense(2*dilation_channels, no bias) of the genre embedding, added to both halves
  ``layer{i}_skip``    Conv1D(skip_channels, 1) of tanh(filter) * sigmoid(gate)
  ``layer{i}_residual`` Conv1D(residual_channels, 1), added to the layer's input (not on the last layer)
  ``postprocess1``     Conv1D(skip_channels, 1) of relu(sum of skips), then relu
  ``postprocess2``     Conv1D(Q, 1): the logits

The context stack (only when ``context_rate`` > 0; van den Oord et al. 2016, section 2.6): a smaller stack on
frames of ``context_rate`` samples that conditions every layer above, as the genre does. The model's input
then starts with ``context_past`` codes (a whole number of frames) that only the context stack reads; the
sample-level stack runs on the rest, so the output has ``context_past`` fewer positions than the input.
Frames are aligned to the input's start: frame f holds input codes f*rate .. (f+1)*rate - 1.
  ``context_embedding`` Embedding(Q, context_channels), averaged over each frame (``context_pool``)
  ``context{j}_conv``   Conv1D(2*context_channels, filter_width, dilation_rate=context_dilations[j], causal) on frames
  ``context{j}_residual`` Conv1D(context_channels, 1) of its gated units, added to the frame's vector
  ``layer{i}_ctx``      Dense(2*dilation_channels, no bias) of the context vector, added to both halves. Output
                        position n (input position context_past + n) takes the vector of the last frame that ends
                        at or before input position context_past + n: causal, and constant over a frame.

The plan (only when ``plan_bands`` > 0: the renderer, local/model/plan_net.py; docs/plan.md): an input
``plan`` (batch, frames + 2 * plan_width, plan_bands) float32 of log-mel dB frames (local/audio/plan.py)
and a small network on frames that conditions every layer. Output position n (the code at the sample-level
input's position n + 1) plays frame n // plan_hop of the window: a window starts so that the sample its first
output predicts begins a frame, and its plan holds ``plan_width`` more frames on each side.
  ``plan_input``        Conv1D(plan_channels, 1) of the frames, scaled from dB (/ 40 + 1)
  ``plan{j}_conv``      Conv1D(plan_channels, 3, valid) + tanh, added to the frames it leaves (j < plan_width)
  ``layer{i}_plan``     Dense(2*dilation_channels, no bias, zeros at first) of the frame's vector, added to both
                        halves. Codes stay strictly causal; the plan is given, so its look-ahead is allowed.
``pre_emphasis`` a > 0: the model's codes are those of the emphasized signal (y[n] - a y[n-1]) / (1 + a) of the
dataset's (LPCNet's noise shaping: its errors come out low-passed once de-emphasized); the plan is still the
dataset audio's. :meth:`WaveNetConfig.model_codes` / :meth:`WaveNetConfig.audio_codes` convert.

Its one description is :class:`WaveNetConfig` (as nanoGPT's ``GPTConfig``): it resolves the dilations from a
stage config, validates, round-trips to ``model.json``'s ``model`` dict, answers the receptive field, the
number of layers and whether the model is genre-conditioned, and builds the model's inputs. Everything
else (training, generation, evaluation, the Spark job) asks it instead of re-deriving.
"""
import dataclasses
import math

from local.core.config import ConfigError, ModelSettings, StageError
from local.store import rundir


class LayerNames:
    """The Keras layer names of the WaveNet (the table above): :func:`build_wavenet` names its layers with these
    and the fast generator (local/generate/weights.py) reads the weights by them, so the two cannot drift."""

    input_embedding = "input_embedding"
    genre_embedding = "genre_embedding"
    skip_sum = "skip_sum"
    postprocess1 = "postprocess1"
    postprocess2 = "postprocess2"
    context_embedding = "context_embedding"
    context_pool = "context_pool"
    plan_input = "plan_input"

    @staticmethod
    def plan_conv(j):
        return f"plan{j}_conv"

    @staticmethod
    def plan(i):
        return f"layer{i}_plan"

    @staticmethod
    def conv(i):
        return f"layer{i}_conv"

    @staticmethod
    def cond(i):
        return f"layer{i}_cond"

    @staticmethod
    def ctx(i):
        return f"layer{i}_ctx"

    @staticmethod
    def skip(i):
        return f"layer{i}_skip"

    @staticmethod
    def residual(i):
        return f"layer{i}_residual"

    @staticmethod
    def context_conv(j):
        return f"context{j}_conv"

    @staticmethod
    def context_residual(j):
        return f"context{j}_residual"


LAYERS = LayerNames()


def default_dilations(stacks=2, layers_per_stack=10):
    """Dilations 1, 2, 4 ... 2**(layers_per_stack-1), repeated ``stacks`` times."""
    return [2 ** i for i in range(layers_per_stack)] * stacks


def receptive_field(dilations, filter_width):
    """Number of input samples one output depends on: (filter_width - 1) * sum(dilations) + 1.

    An output at position t depends on inputs t - receptive_field + 1 .. t.
    """
    return (filter_width - 1) * sum(int(d) for d in dilations) + 1


# minimum of each whole-number field (filter_width: a causal convolution needs a past tap)
_MINIMUMS = {"filter_width": 2, "residual_channels": 1, "dilation_channels": 1, "skip_channels": 1,
             "quantization_channels": 2, "genre_channels": 1, "n_genres": 1, "context_rate": 0,
             "context_channels": 1, "plan_bands": 0, "plan_hop": 1, "plan_channels": 1, "plan_width": 0}


@dataclasses.dataclass(frozen=True)
class WaveNetConfig(ModelSettings):
    """The WaveNet's structure; ``to_json()`` is ``model.json``'s ``model`` dict (keys as in CONTRACTS.md).

    dilations  one per layer (a tuple of ints >= 1)
    n_genres   rows of the genre embedding (the dataset's genres; used only when ``genre_conditioning``)
    context_rate       samples per context frame; 0 = no context stack (every model saved before it existed)
    context_dilations  one per context layer, in frames
    context_channels   channels of the context stack
    """
    dilations: tuple = tuple(default_dilations())
    filter_width: int = 2
    residual_channels: int = 32
    dilation_channels: int = 32
    skip_channels: int = 128
    quantization_channels: int = 256
    genre_conditioning: bool = False
    genre_channels: int = 16
    n_genres: int = 1
    context_rate: int = 0
    context_dilations: tuple = (1, 2, 4, 8, 16, 32)
    context_channels: int = 32
    plan_bands: int = 0
    plan_hop: int = 256
    plan_n_fft: int = 1024
    plan_fmin: float = 30.0
    plan_fmax: float = 0.0
    plan_channels: int = 64
    plan_width: int = 2
    pre_emphasis: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "context_dilations", tuple(int(d) for d in self.context_dilations))
        object.__setattr__(self, "genre_conditioning", bool(self.genre_conditioning))
        self.validate()

    def validate(self):
        """Raise :class:`local.core.config.ConfigError` naming the first bad key and what it accepts."""
        if not self.dilations or min(self.dilations) < 1:
            shown = ",".join(map(str, self.dilations))
            raise ConfigError(f"--dilations={shown}: expected at least one layer, every dilation >= 1")
        for key, low in _MINIMUMS.items():
            if getattr(self, key) < low:
                raise ConfigError(f"--{key}={getattr(self, key)}: must be at least {low}")
        if not 0 <= self.pre_emphasis < 1:
            raise ConfigError(f"--pre_emphasis={self.pre_emphasis}: expected 0 <= a < 1 (0 = off; LPCNet uses 0.85)")
        if self.pre_emphasis and not self.plan_bands:
            raise ConfigError(f"--pre_emphasis={self.pre_emphasis}: only a renderer uses it: pass --plan_bands too")
        if self.context_rate and (not self.context_dilations or min(self.context_dilations) < 1):
            shown = ",".join(map(str, self.context_dilations))
            raise ConfigError(f"--context_dilations={shown}: expected at least one layer, every dilation >= 1 "
                              f"(used with context_rate > 0)")

    @classmethod
    def from_config(cls, config, n_genres=1):
        """From a stage config dict: ``dilations``, or 1..2**(layers_per_stack-1) x ``stacks`` when
        ``layers_per_stack`` > 0; ``context_dilations``, or 1..2**(context_layers-1) when ``context_layers`` > 0;
        the other fields by name. Raises ConfigError naming one key."""
        dilations = config.get("dilations", cls.dilations)
        if config.get("layers_per_stack", 0) > 0:
            if config.get("stacks", 1) < 1:
                raise ConfigError(f"--stacks={config['stacks']}: must be at least 1 (used with layers_per_stack)")
            dilations = default_dilations(config["stacks"], config["layers_per_stack"])
        fields = {f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config}
        if config.get("context_layers", 0) > 0:
            fields["context_dilations"] = default_dilations(1, config["context_layers"])
        return cls(**{**fields, "dilations": dilations, "n_genres": max(1, int(n_genres))})


    @property
    def receptive_field(self):
        """Samples one output depends on (see :func:`receptive_field`)."""
        return receptive_field(self.dilations, self.filter_width)

    @property
    def has_plan(self):
        """Whether the model renders a plan (``plan_bands`` > 0): it then takes a ``plan`` input."""
        return self.plan_bands > 0

    def plan_settings(self, sample_rate):
        """The :class:`local.audio.plan.PlanSettings` of this model's plan at ``sample_rate`` Hz, or None."""
        from local.audio.plan import PlanSettings
        return PlanSettings.from_model_keys(self.to_json(), sample_rate, self.quantization_channels)

    def plan_frames_for(self, n_outputs):
        """Frames of the ``plan`` input a pass with ``n_outputs`` sample-level output positions reads:
        ceil(n_outputs / plan_hop) + 2 * plan_width (0 without a plan)."""
        if not self.has_plan:
            return 0
        return -(-int(n_outputs) // self.plan_hop) + 2 * self.plan_width

    def model_codes(self, codes):
        """The codes this model reads for dataset ``codes`` (n,): emphasized when ``pre_emphasis`` > 0."""
        from local.audio.waveform import emphasize_codes
        return emphasize_codes(codes, self.pre_emphasis, self.quantization_channels)

    def audio_codes(self, codes):
        """Dataset-domain codes (..., n) of codes this model generated: de-emphasized when ``pre_emphasis`` > 0."""
        from local.audio.waveform import de_emphasize_codes
        return de_emphasize_codes(codes, self.pre_emphasis, self.quantization_channels)

    @property
    def has_context(self):
        """Whether the model has a context stack (``context_rate`` > 0)."""
        return self.context_rate > 0

    @property
    def context_receptive_frames(self):
        """Frames one context vector depends on (0 without a context stack)."""
        return receptive_field(self.context_dilations, self.filter_width) if self.has_context else 0

    @property
    def context_past(self):
        """Codes at the start of the model's input that only the context stack reads: context_receptive_frames
        whole frames, so that every position of the sample-level stack is conditioned on a full context (the
        first of them takes the frame that ends just before it). 0 without a context stack."""
        return self.context_receptive_frames * self.context_rate

    @property
    def window_field(self):
        """Codes a window reads before its first target: context_past + receptive_field (the training and
        validation windows' ``receptive_field`` argument; = receptive_field without a context stack)."""
        return self.context_past + self.receptive_field

    @property
    def total_receptive_field(self):
        """Samples one output depends on, both stacks. An output depends on the conditioning of the last
        receptive_field - (filter_width - 1) * dilations[0] positions (the first layer's conditioning reaches
        it through the layers above), each of those on context_receptive_frames whole frames that end at or
        before it: (context_receptive_frames + 1) * context_rate - 2 + that, at the worst frame phase."""
        if not self.has_context:
            return self.receptive_field
        conditioned = self.receptive_field - (self.filter_width - 1) * self.dilations[0]
        return max(self.receptive_field, (self.context_receptive_frames + 1) * self.context_rate - 2 + conditioned)

    def receptive_field_json(self, sample_rate):
        """The whole model's receptive field for model.json, evaluation.json and the report page."""
        total = self.total_receptive_field
        return {"total_receptive_field": total, "total_receptive_field_seconds": round(total / float(sample_rate), 4),
                "context_past": self.context_past}

    @property
    def silence_code(self):
        """The code of silence, Q // 2 (the mu-law code of 0.0): what the generator and pad_context start from."""
        return self.quantization_channels // 2

    def pad_context(self, codes):
        """``codes`` (..., n) with ``context_past`` codes of silence (Q//2) in front: the input of a full forward
        pass from a track's start (the generator starts from that silence too). Unchanged without a context."""
        import numpy as np
        codes = np.asarray(codes)
        if not self.context_past:
            return codes
        pad = np.full(codes.shape[:-1] + (self.context_past,), self.silence_code, codes.dtype)
        return np.concatenate([pad, codes], axis=-1)

    @property
    def uniform_bits(self):
        """log2(quantization_channels): the bits/sample of a model that knows nothing (the baseline)."""
        return math.log2(self.quantization_channels)

    @property
    def n_layers(self):
        return len(self.dilations)

    @property
    def conditioned(self):
        """Whether the model takes a ``genre_id`` input."""
        return self.genre_conditioning

    def model_inputs(self, codes, genre_ids=None, plan=None):
        """The model's inputs, as a list in its input order: ``codes`` (B, T) int32 [, ``genre_ids`` (B,) int32]
        [, ``plan`` (B, plan_frames_for(outputs), plan_bands) float32].

        Arrays or tensors pass through unchanged (cast them first); ``genre_ids`` is dropped for an
        unconditioned model and required by a conditioned one, ``plan`` the same for a renderer.
        """
        inputs = [codes]
        if self.conditioned:
            if genre_ids is None:
                raise ValueError("this model is genre-conditioned: pass one genre id per row")
            inputs.append(genre_ids)
        if self.has_plan:
            if plan is None:
                raise ValueError("this model renders a plan: pass the plan frames of every row")
            inputs.append(plan)
        return inputs


FORMULATIONS = ("keras", "shifted")


def build_wavenet(config, formulation="keras"):
    """Build the WaveNet of ``config`` (a :class:`WaveNetConfig`) as a Keras functional model (uncompiled).

    ``formulation`` is a build option, not part of the model's description (not in ``model.json``): it only
    changes how ``layer{i}_conv`` computes (same weights, same outputs to float rounding): "keras" = Keras' own
    dilated Conv1D; "shifted" = :func:`local.model.shifted_conv.dilated_conv_class` (shifted views times one matrix). Keras' stays the
    default: with TensorFlow 2.19's oneDNN convolution it has almost no dilation penalty, and the
    matrix-product form was 2.6x slower per layer (fwd+bwd, one thread, 4x3023x32 -> 64: 4.0-4.4 ms against
    11.3-11.6 ms; bench/bench_training.py compares the whole models).
    """
    import keras
    from keras import layers, ops
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation={formulation!r}: expected one of {FORMULATIONS}")
    if formulation == "shifted":
        from local.model.shifted_conv import dilated_conv_class
        dilated_conv = dilated_conv_class()
    else:
        dilated_conv = layers.Conv1D

    dilation_channels, n_layers = config.dilation_channels, config.n_layers
    codes = keras.Input(shape=(None,), dtype="int32", name="codes")
    inputs = [codes]
    x = layers.Embedding(config.quantization_channels, config.residual_channels, name=LAYERS.input_embedding)(codes)
    genre = None
    if config.conditioned:
        genre_id = keras.Input(shape=(), dtype="int32", name="genre_id")
        inputs.append(genre_id)
        genre = layers.Embedding(config.n_genres, config.genre_channels, name=LAYERS.genre_embedding)(genre_id)
    context, frame_index = None, None
    if config.has_context:
        context, frame_index = _context_stack(config, codes)
        x = x[:, config.context_past:, :]  # the sample-level stack starts after the context's past
    plan_vectors, plan_index = None, None
    if config.has_plan:
        from local.model.plan_net import plan_network
        plan = keras.Input(shape=(None, config.plan_bands), dtype="float32", name="plan")
        inputs.append(plan)
        plan_vectors, plan_index = plan_network(config, plan, codes, LAYERS)
    skips = []
    for i, dilation in enumerate(config.dilations):
        z = dilated_conv(2 * dilation_channels, config.filter_width, dilation_rate=dilation, padding="causal",
                         name=LAYERS.conv(i))(x)
        if genre is not None:
            condition = layers.Dense(2 * dilation_channels, use_bias=False, name=LAYERS.cond(i))(genre)
            z = z + ops.expand_dims(condition, 1)  # the same genre vector at every time step
        if context is not None:
            # zeros at first: the model starts as the plain one and learns how much of the context to use
            projected = layers.Dense(2 * dilation_channels, use_bias=False, kernel_initializer="zeros",
                                     name=LAYERS.ctx(i))(context)
            z = z + ops.take(projected, frame_index, axis=1)  # each position its frame's vector (a row gather)
        if plan_vectors is not None:
            # zeros at first, as the context's: the renderer starts as the plain WaveNet
            projected = layers.Dense(2 * dilation_channels, use_bias=False, kernel_initializer="zeros",
                                     name=LAYERS.plan(i))(plan_vectors)
            z = z + ops.take(projected, plan_index, axis=1)
        gated = ops.tanh(z[..., :dilation_channels]) * ops.sigmoid(z[..., dilation_channels:])
        skips.append(layers.Conv1D(config.skip_channels, 1, name=LAYERS.skip(i))(gated))
        if i < n_layers - 1:
            x = x + layers.Conv1D(config.residual_channels, 1, name=LAYERS.residual(i))(gated)
    total = ops.relu(layers.Add(name=LAYERS.skip_sum)(skips) if len(skips) > 1 else skips[0])
    hidden = ops.relu(layers.Conv1D(config.skip_channels, 1, name=LAYERS.postprocess1)(total))
    logits = layers.Conv1D(config.quantization_channels, 1, name=LAYERS.postprocess2)(hidden)
    return keras.Model(inputs, logits, name="wavenet")


def _context_stack(config, codes):
    """The context stack on ``codes`` (B, T): (context (B, K, C), frame_index (T - context_past,) int32).

    Row k of ``context`` is the output of frame k - 1 + context_past / rate (a zero vector for k = 0 when
    context_past = 0: no frame has ended yet); output position n takes row (n + 1) // rate, the last frame
    that ends at or before input position context_past + n. The index is built from the codes' own shape
    (a cumulative sum of ones over the first row: every row has the same frames), so any input length works
    with standard layers only, and each layer's conditioning is one gather of whole rows (measured: Keras'
    take_along_axis, which gathers element by element, cost 1.39x the plain model's train step).
    """
    from keras import layers, ops
    rate, channels = config.context_rate, config.context_channels
    y = layers.Embedding(config.quantization_channels, channels, name=LAYERS.context_embedding)(codes)
    y = layers.AveragePooling1D(rate, strides=rate, name=LAYERS.context_pool)(y)  # (B, floor(T / rate), C)
    for j, dilation in enumerate(config.context_dilations):
        z = layers.Conv1D(2 * channels, config.filter_width, dilation_rate=dilation, padding="causal",
                          name=LAYERS.context_conv(j))(y)
        gated = ops.tanh(z[..., :channels]) * ops.sigmoid(z[..., channels:])
        y = y + layers.Conv1D(channels, 1, name=LAYERS.context_residual(j))(gated)
    context = ops.pad(y, [[0, 0], [1, 0], [0, 0]])[:, config.context_past // rate:, :]
    positions = ops.cumsum(ops.ones_like(codes[0, config.context_past:]))  # n + 1
    frame_index = ops.floor_divide(positions, rate)
    return context, frame_index


def read_run_model(run_dir):
    """(WaveNetConfig, model.json dict) of a WaveNet run: the one way a WaveNet's structure is read back
    (a tagger's: :func:`local.model.tagger.read_tagger_run`). StageError naming the kind for another kind of run."""
    info = rundir.read_model_json(run_dir)
    if rundir.run_kind(info) != "wavenet":
        raise StageError(f"run_dir={run_dir!r} is a {rundir.run_kind(info)} run, not a WaveNet (a tagger run is "
                         f"used with --audio=FILE_OR_FOLDER, --similar_to=FILE_OR_TRACK_ID, or as --judge=RUN_DIR)")
    return WaveNetConfig.from_json(info["model"]), info
