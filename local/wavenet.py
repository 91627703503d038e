"""The WaveNet: causal dilated convolutions, gated units, residual and skip paths, optional genre conditioning.

Built from standard Keras 3 layers only, so ``model.save`` / ``keras.models.load_model`` round-trip it and a
Spark executor can rebuild it from ``model.to_json()``. Layer names are part of the interface: the fast
generator (``local/generation.py``) reads the weights by these names.

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

Its one description is :class:`WaveNetConfig` (as nanoGPT's ``GPTConfig``): it resolves the dilations from a
stage config, validates, round-trips to ``model.json``'s ``model`` dict, answers the receptive field, the
number of layers and whether the model is genre-conditioned, and builds the model's inputs. Everything
else (training, generation, evaluation, the Spark job) asks it instead of re-deriving.
"""
import dataclasses
import math

from local import rundir
from local.config import ConfigError, ModelSettings, StageError


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
             "quantization_channels": 2, "genre_channels": 1, "n_genres": 1}


@dataclasses.dataclass(frozen=True)
class WaveNetConfig(ModelSettings):
    """The WaveNet's structure; ``to_json()`` is ``model.json``'s ``model`` dict (keys as in CONTRACTS.md).

    dilations  one per layer (a tuple of ints >= 1)
    n_genres   rows of the genre embedding (the dataset's genres; used only when ``genre_conditioning``)
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

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "genre_conditioning", bool(self.genre_conditioning))
        self.validate()

    def validate(self):
        """Raise :class:`local.config.ConfigError` naming the first bad key and what it accepts."""
        if not self.dilations or min(self.dilations) < 1:
            shown = ",".join(map(str, self.dilations))
            raise ConfigError(f"--dilations={shown}: expected at least one layer, every dilation >= 1")
        for key, low in _MINIMUMS.items():
            if getattr(self, key) < low:
                raise ConfigError(f"--{key}={getattr(self, key)}: must be at least {low}")

    @classmethod
    def from_config(cls, config, n_genres=1):
        """From a stage config dict: ``dilations``, or 1..2**(layers_per_stack-1) x ``stacks`` when
        ``layers_per_stack`` > 0; the other fields by name. Raises ConfigError naming one key."""
        dilations = config.get("dilations", cls.dilations)
        if config.get("layers_per_stack", 0) > 0:
            if config.get("stacks", 1) < 1:
                raise ConfigError(f"--stacks={config['stacks']}: must be at least 1 (used with layers_per_stack)")
            dilations = default_dilations(config["stacks"], config["layers_per_stack"])
        fields = {f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config}
        return cls(**{**fields, "dilations": dilations, "n_genres": max(1, int(n_genres))})


    @property
    def receptive_field(self):
        """Samples one output depends on (see :func:`receptive_field`)."""
        return receptive_field(self.dilations, self.filter_width)

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

    def model_inputs(self, codes, genre_ids=None):
        """The model's inputs, as a list in its input order: ``codes`` (B, T) int32 [, ``genre_ids`` (B,) int32].

        Arrays or tensors pass through unchanged (cast them to int32 first); ``genre_ids`` is dropped for an
        unconditioned model and required by a conditioned one.
        """
        if not self.conditioned:
            return [codes]
        if genre_ids is None:
            raise ValueError("this model is genre-conditioned: pass one genre id per row")
        return [codes, genre_ids]


FORMULATIONS = ("keras", "shifted")


def build_wavenet(config, formulation="keras"):
    """Build the WaveNet of ``config`` (a :class:`WaveNetConfig`) as a Keras functional model (uncompiled).

    ``formulation`` is a build option, not part of the model's description (not in ``model.json``): it only
    changes how ``layer{i}_conv`` computes (same weights, same outputs to float rounding): "keras" = Keras' own
    dilated Conv1D; "shifted" = :func:`dilated_conv_class` (shifted views times one matrix). Keras' stays the
    default: with TensorFlow 2.19's oneDNN convolution it has almost no dilation penalty, and the
    matrix-product form was 2.6x slower per layer (fwd+bwd, one thread, 4x3023x32 -> 64: 4.0-4.4 ms against
    11.3-11.6 ms; bench/bench_training.py compares the whole models).
    """
    import keras
    from keras import layers, ops
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation={formulation!r}: expected one of {FORMULATIONS}")
    dilated_conv = dilated_conv_class() if formulation == "shifted" else layers.Conv1D

    dilation_channels, n_layers = config.dilation_channels, config.n_layers
    codes = keras.Input(shape=(None,), dtype="int32", name="codes")
    inputs = [codes]
    x = layers.Embedding(config.quantization_channels, config.residual_channels, name="input_embedding")(codes)
    genre = None
    if config.conditioned:
        genre_id = keras.Input(shape=(), dtype="int32", name="genre_id")
        inputs.append(genre_id)
        genre = layers.Embedding(config.n_genres, config.genre_channels, name="genre_embedding")(genre_id)
    skips = []
    for i, dilation in enumerate(config.dilations):
        z = dilated_conv(2 * dilation_channels, config.filter_width, dilation_rate=dilation, padding="causal",
                         name=f"layer{i}_conv")(x)
        if genre is not None:
            condition = layers.Dense(2 * dilation_channels, use_bias=False, name=f"layer{i}_cond")(genre)
            z = z + ops.expand_dims(condition, 1)  # the same genre vector at every time step
        gated = ops.tanh(z[..., :dilation_channels]) * ops.sigmoid(z[..., dilation_channels:])
        skips.append(layers.Conv1D(config.skip_channels, 1, name=f"layer{i}_skip")(gated))
        if i < n_layers - 1:
            x = x + layers.Conv1D(config.residual_channels, 1, name=f"layer{i}_residual")(gated)
    total = ops.relu(layers.Add(name="skip_sum")(skips) if len(skips) > 1 else skips[0])
    hidden = ops.relu(layers.Conv1D(config.skip_channels, 1, name="postprocess1")(total))
    logits = layers.Conv1D(config.quantization_channels, 1, name="postprocess2")(hidden)
    return keras.Model(inputs, logits, name="wavenet")


_DILATED_CONV = []


def dilated_conv_class():
    """The causal dilated convolution as shifted views times one matrix: a Keras layer class, registered as
    ``waveforms>Conv1D`` (made on first use, so importing this module does not import Keras): call it before
    ``keras.models.load_model`` of a model built with ``formulation="shifted"`` (the default models use Keras'
    own Conv1D and need nothing)."""
    if _DILATED_CONV:
        return _DILATED_CONV[0]
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class Conv1D(keras.layers.Conv1D):
        """Keras' causal ``Conv1D`` (same config, weights and outputs), computed as k shifted views of the
        input concatenated on channels times the kernel reshaped to (k * in, filters): one matrix product.

        Issue 11's candidate against TensorFlow's space-to-batch path for dilated convolutions (tensorflow
        issue 37883); measured slower than TensorFlow 2.19's oneDNN convolution on a CPU (see
        :func:`build_wavenet`), so only bench/bench_training.py builds it by default. The class is named ``Conv1D`` on purpose:
        a model's weight file names its layers by class (``layers/conv1d_3/vars/0``), so checkpoints written
        with the stock layer load into this one and back.
        """

        def call(self, inputs):
            if (self.padding != "causal" and self.kernel_size != (1,)) or self.strides != (1,) or \
                    self.data_format != "channels_last":
                return super().call(inputs)
            width, dilation = self.kernel_size[0], self.dilation_rate[0]
            span = (width - 1) * dilation
            padded = ops.pad(inputs, [[0, 0], [span, 0], [0, 0]]) if span else inputs
            # tap j reads x[t - (width-1-j) * dilation], as the causal convolution's kernel row j does
            taps = [padded[:, j * dilation:(j * dilation - span) or None, :] for j in range(width)]
            stacked = ops.concatenate(taps, axis=-1) if width > 1 else taps[0]
            kernel = ops.reshape(self.kernel, (width * self.kernel.shape[1], self.filters))
            # as one 2-D product: TensorFlow's broadcasting batch matmul of (B, T, C) by (C, F) is slower
            batch, steps = ops.shape(stacked)[0], ops.shape(stacked)[1]
            outputs = ops.reshape(ops.matmul(ops.reshape(stacked, (-1, width * self.kernel.shape[1])), kernel),
                                  (batch, steps, self.filters))
            if self.use_bias:
                outputs = outputs + self.bias
            return self.activation(outputs) if self.activation is not None else outputs

    _DILATED_CONV.append(Conv1D)
    return Conv1D


def read_run_model(run_dir):
    """(WaveNetConfig, model.json dict) of a WaveNet run: the one way a WaveNet's structure is read back
    (a tagger's: :func:`local.tagger.read_tagger_run`). StageError naming the kind for another kind of run."""
    info = rundir.read_model_json(run_dir)
    if rundir.run_kind(info) != "wavenet":
        raise StageError(f"run_dir={run_dir!r} is a {rundir.run_kind(info)} run, not a WaveNet (a tagger run is "
                         f"used with --audio=FILE_OR_FOLDER, --similar_to=FILE_OR_TRACK_ID, or as --judge=RUN_DIR)")
    return WaveNetConfig.from_json(info["model"]), info
