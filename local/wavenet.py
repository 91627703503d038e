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


def build_wavenet(dilations=None, filter_width=2, residual_channels=32, dilation_channels=32, skip_channels=128,
                  quantization_channels=256, genre_conditioning=False, genre_channels=16, n_genres=1):
    """Build the WaveNet as a Keras functional model (uncompiled); see the module docstring for its layers."""
    import keras
    from keras import layers, ops

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
        z = layers.Conv1D(2 * dilation_channels, filter_width, dilation_rate=int(dilation), padding="causal",
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
