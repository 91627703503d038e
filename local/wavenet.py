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
"""

MODEL_KEYS = ("dilations", "filter_width", "residual_channels", "dilation_channels", "skip_channels",
              "quantization_channels", "genre_conditioning", "genre_channels", "n_genres")


def default_dilations(stacks=2, layers_per_stack=10):
    """Dilations 1, 2, 4 ... 2**(layers_per_stack-1), repeated ``stacks`` times."""
    return [2 ** i for i in range(layers_per_stack)] * stacks


def receptive_field(dilations, filter_width):
    """Number of input samples one output depends on: (filter_width - 1) * sum(dilations) + 1.

    An output at position t depends on inputs t - receptive_field + 1 .. t.
    """
    return (filter_width - 1) * sum(int(d) for d in dilations) + 1


FORMULATIONS = ("keras", "shifted")


def build_wavenet(dilations=None, filter_width=2, residual_channels=32, dilation_channels=32, skip_channels=128,
                  quantization_channels=256, genre_conditioning=False, genre_channels=16, n_genres=1,
                  formulation="keras"):
    """Build the WaveNet as a Keras functional model (uncompiled); see the module docstring for its layers.

    ``formulation`` only changes how ``layer{i}_conv`` computes (same weights, same outputs to float
    rounding): "keras" = Keras' own dilated Conv1D; "shifted" = :func:`dilated_conv_class` (shifted views
    times one matrix). Keras' stays the default: with TensorFlow 2.19's oneDNN convolution it has almost no
    dilation penalty, and the matrix-product form was 2.6x slower per layer (fwd+bwd, one thread, 4x3023x32
    -> 64: 4.0-4.4 ms against 11.3-11.6 ms; bench/bench_training.py compares the whole models).
    """
    import keras
    from keras import layers, ops
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation={formulation!r}: expected one of {FORMULATIONS}")
    dilated_conv = dilated_conv_class() if formulation == "shifted" else layers.Conv1D

    dilations = list(dilations or default_dilations())
    codes = keras.Input(shape=(None,), dtype="int32", name="codes")
    inputs = [codes]
    x = layers.Embedding(quantization_channels, residual_channels, name="input_embedding")(codes)
    genre = None
    if genre_conditioning:
        genre_id = keras.Input(shape=(), dtype="int32", name="genre_id")
        inputs.append(genre_id)
        genre = layers.Embedding(max(1, n_genres), genre_channels, name="genre_embedding")(genre_id)
    skips = []
    for i, dilation in enumerate(dilations):
        z = dilated_conv(2 * dilation_channels, filter_width, dilation_rate=int(dilation), padding="causal",
                         name=f"layer{i}_conv")(x)
        if genre is not None:
            condition = layers.Dense(2 * dilation_channels, use_bias=False, name=f"layer{i}_cond")(genre)
            z = z + ops.expand_dims(condition, 1)  # the same genre vector at every time step
        gated = ops.tanh(z[..., :dilation_channels]) * ops.sigmoid(z[..., dilation_channels:])
        skips.append(layers.Conv1D(skip_channels, 1, name=f"layer{i}_skip")(gated))
        if i < len(dilations) - 1:
            x = x + layers.Conv1D(residual_channels, 1, name=f"layer{i}_residual")(gated)
    total = ops.relu(layers.Add(name="skip_sum")(skips) if len(skips) > 1 else skips[0])
    hidden = ops.relu(layers.Conv1D(skip_channels, 1, name="postprocess1")(total))
    logits = layers.Conv1D(quantization_channels, 1, name="postprocess2")(hidden)
    return keras.Model(inputs, logits, name="wavenet")


def model_settings(config, n_genres=1):
    """The :func:`build_wavenet` arguments from a stage config dict (dilations from ``dilations`` or stacks)."""
    dilations = list(config.get("dilations") or default_dilations(config.get("stacks", 2),
                                                                  config.get("layers_per_stack", 10)))
    return {"dilations": dilations, "filter_width": config["filter_width"],
            "residual_channels": config["residual_channels"], "dilation_channels": config["dilation_channels"],
            "skip_channels": config["skip_channels"], "quantization_channels": config["quantization_channels"],
            "genre_conditioning": bool(config["genre_conditioning"]), "genre_channels": config["genre_channels"],
            "n_genres": int(n_genres)}


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
