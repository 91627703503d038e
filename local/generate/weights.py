"""The fast generator's weights, folded out of a Keras WaveNet through the layer names the model defines
(:data:`local.model.wavenet.LAYER_NAMES`).
"""

import numpy as np

from local.model.structure import structure_mismatch
from local.model.wavenet import LAYERS


def fold_weights(model, config):
    """Read the WaveNet's weights by layer name into contiguous float32 arrays the kernel multiplies with.

    model   a Keras model built by :func:`local.model.wavenet.build_wavenet` (or loaded from model.keras)
    config  its :class:`local.model.wavenet.WaveNetConfig` (the structure comes from there; ValueError when the
            layers say otherwise: :func:`local.model.wavenet.structure_mismatch`)
    Returns a dict: ``embedding`` (Q, R); ``conv_w`` (L, filter_width*R, 2D) (tap j in rows j*R..);
    ``conv_b`` (L, 2D); ``genre_embedding`` (n_genres, G) and ``cond_w`` (L, G, 2D) or None;
    ``skip_w`` (L*D, S) (every layer's skip convolution stacked: one product of all the gates);
    ``skip_b`` (S,) the sum of every layer's skip bias; ``res_w`` (L, D, R) and ``res_b`` (L, R) (zeros on
    the last layer, which has none); ``post1_w`` (S, S), ``post1_b``, ``post2_w`` (S, Q), ``post2_b``;
    ``dilations`` (L,) int64; ``filter_width``; ``receptive_field``; ``config``. R, D, S = residual, dilation
    and skip channels, Q = quantization channels, L = layers. With a context stack also ``context``: a dict
    of ``embedding`` (Q, C), ``conv_w`` / ``conv_b`` / ``res_w`` / ``res_b`` (lists, one per context layer:
    (filter_width, C, 2C), (2C,), (C, C), (C,)), ``ctx_w`` (L, C, 2D) (every layer's ``layer{i}_ctx``),
    ``dilations`` and ``rate``; else ``context`` is None.
    """
    problem = structure_mismatch(model, config)
    if problem:  # folding by config's layer count would generate from another network without a word
        raise ValueError(f"the model and its model.json disagree: {problem}")
    n_layers = config.n_layers

    def arrays(name):
        return [np.asarray(w, dtype=np.float32) for w in model.get_layer(name).get_weights()]

    embedding = arrays(LAYERS.input_embedding)[0]
    convs = [arrays(LAYERS.conv(i)) for i in range(n_layers)]
    skips = [arrays(LAYERS.skip(i)) for i in range(n_layers)]
    width, n_res, n_gate2 = convs[0][0].shape
    n_skip = skips[0][0].shape[2]
    res_w = np.zeros((n_layers, n_gate2 // 2, n_res), np.float32)
    res_b = np.zeros((n_layers, n_res), np.float32)
    for i in range(n_layers - 1):
        kernel, bias = arrays(LAYERS.residual(i))
        res_w[i], res_b[i] = kernel[0], bias
    conditioned = config.conditioned
    post1_w, post1_b = arrays(LAYERS.postprocess1)
    post2_w, post2_b = arrays(LAYERS.postprocess2)
    dilations = np.array(config.dilations, np.int64)
    contiguous = np.ascontiguousarray
    return {
        "embedding": contiguous(embedding),
        "conv_w": contiguous(np.stack([c[0].reshape(width * n_res, n_gate2) for c in convs])),
        "conv_b": contiguous(np.stack([c[1] for c in convs])),
        "genre_embedding": contiguous(arrays(LAYERS.genre_embedding)[0]) if conditioned else None,
        "cond_w": contiguous(np.stack([arrays(LAYERS.cond(i))[0] for i in range(n_layers)]))
        if conditioned else None,
        "skip_w": contiguous(np.concatenate([s[0][0] for s in skips])),
        "skip_b": contiguous(np.sum([s[1] for s in skips], axis=0, dtype=np.float32)),
        "res_w": res_w, "res_b": res_b,
        "post1_w": contiguous(post1_w[0]), "post1_b": post1_b,
        "post2_w": contiguous(post2_w[0]), "post2_b": post2_b,
        "dilations": dilations, "filter_width": config.filter_width,
        "receptive_field": config.receptive_field, "config": config,
        "context": _fold_context(arrays, config) if config.has_context else None,
    }


def _fold_context(arrays, config):
    """The context stack's weights (see :func:`fold_weights`); ``arrays(name)`` reads one layer's."""
    n_ctx = len(config.context_dilations)
    convs = [arrays(LAYERS.context_conv(j)) for j in range(n_ctx)]
    residuals = [arrays(LAYERS.context_residual(j)) for j in range(n_ctx)]
    width, channels, n_ctx2 = convs[0][0].shape
    ctx_w = np.stack([arrays(LAYERS.ctx(i))[0] for i in range(config.n_layers)], axis=1)  # (C, L, 2D)
    contiguous = np.ascontiguousarray
    return {"embedding": contiguous(arrays(LAYERS.context_embedding)[0]),
            "conv_w": contiguous(np.stack([c[0].reshape(width * channels, n_ctx2) for c in convs])),
            "conv_b": contiguous(np.stack([c[1] for c in convs])),
            "res_w": contiguous(np.stack([r[0][0] for r in residuals])),
            "res_b": contiguous(np.stack([r[1] for r in residuals])),
            "ctx_w": contiguous(ctx_w.reshape(channels, -1)),
            "dilations": np.array(config.context_dilations, np.int64), "rate": config.context_rate,
            "first_frame": config.context_receptive_frames}


_NO_CONTEXT = {"embedding": np.zeros((0, 0), np.float32), "conv_w": np.zeros((0, 0, 0), np.float32),
               "conv_b": np.zeros((0, 0), np.float32), "res_w": np.zeros((0, 0, 0), np.float32),
               "res_b": np.zeros((0, 0), np.float32), "ctx_w": np.zeros((0, 0), np.float32),
               "dilations": np.zeros(0, np.int64), "rate": 0, "first_frame": 0}
