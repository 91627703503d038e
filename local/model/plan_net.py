"""The renderer's conditioning network on plan frames (the ``plan`` input of :func:`local.model.wavenet.build_wavenet`;
the layer table is in local/model/wavenet.py's docstring, the names in its ``LAYERS``).
"""
DB_SCALE = 40.0  # plan dB / 40 + 1: the floor (-80 dB) at -1, a full-scale band near +1


def plan_network(config, plan, codes, names):
    """(vectors (B, F, plan_channels), index (T,) int32) of ``plan`` (B, F + 2 * plan_width, plan_bands) for
    the sample-level stack's T positions (``codes`` (B, T + context_past)): output position n takes row
    n // plan_hop. Each of ``plan_width`` valid width-3 convolutions reads one frame more on each side.
    ``names``: local.model.wavenet.LAYERS (passed in: this module sits below the model it is part of)."""
    from keras import layers, ops
    width, channels = config.plan_width, config.plan_channels
    y = layers.Conv1D(channels, 1, name=names.plan_input)(plan / DB_SCALE + 1.0)
    for j in range(width):
        z = layers.Conv1D(channels, 3, padding="valid", name=names.plan_conv(j))(y)
        y = y[:, 1:-1, :] + ops.tanh(z)
    positions = ops.cumsum(ops.ones_like(codes[0, config.context_past:])) - 1  # n
    return y, ops.floor_divide(positions, config.plan_hop)
