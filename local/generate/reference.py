"""The slow reference generator: the full Keras forward pass over the receptive field for every sample. Tests
and benches compare the fast generator with it.
"""
import weakref

import numpy as np

_NAIVE_FORWARD = weakref.WeakKeyDictionary()


def naive_generate(model, config, n_samples, *, genre_id=None, temperature=1.0, seed=0, history=None):
    """The slow reference: one full Keras forward pass over the last receptive field of codes for every new
    sample, as the seed system did (XLA-compiled once the window is full). ``history``: the codes before
    (default: the start code Q//2 alone, after the causal zero padding, like :func:`generate`).
    ``config``: the model's WaveNetConfig. Returns (n_samples,) int32 codes. For tests and benchmarks.
    """
    import tensorflow as tf
    n_q = config.quantization_channels
    if config.has_context:
        return _naive_context_generate(model, config, n_samples, genre_id=genre_id, temperature=temperature,
                                       seed=seed, history=history)
    window = config.receptive_field
    codes = list(np.asarray([n_q // 2] if history is None else history, np.int32).reshape(-1)[-window:])
    genre = np.array([genre_id or 0], np.int32)
    if model not in _NAIVE_FORWARD:  # compiled once per model, so a second call times the steady state

        def last_logits(*inputs):
            return model(list(inputs), training=False)[:, -1, :]

        _NAIVE_FORWARD[model] = (tf.function(last_logits, reduce_retracing=True),  # while the history grows
                                 tf.function(last_logits, jit_compile=True))  # XLA: ~1.6x plain graph mode
    growing, full = _NAIVE_FORWARD[model]
    rng = np.random.default_rng(seed)
    out = np.empty(int(n_samples), np.int32)
    for i in range(int(n_samples)):
        inputs = config.model_inputs(np.array(codes[-window:], np.int32)[None], genre)
        logits = np.asarray((full if len(codes) >= window else growing)(*inputs)[0], np.float64)
        code = _draw_code(logits, temperature, rng)
        out[i] = code
        codes.append(code)
    return out


def _draw_code(logits, temperature, rng):
    """The reference generators' draw: argmax at temperature <= 0, else a sample of softmax(logits / T)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    p = np.exp((logits - logits.max()) / temperature)
    return int(rng.choice(len(logits), p=p / p.sum()))


def _naive_context_generate(model, config, n_samples, *, genre_id, temperature, seed, history):
    """:func:`naive_generate` for a model with a context stack: each pass reads the silence-padded history from
    the last frame boundary at or before window_field codes back (the frames stay where the generator has them)."""
    import tensorflow as tf
    n_q, rate = config.quantization_channels, config.context_rate
    codes = list(config.pad_context(np.asarray([n_q // 2] if history is None else history, np.int32).reshape(-1)))
    forward = tf.function(lambda *inputs: model(list(inputs), training=False)[:, -1, :], reduce_retracing=True)
    genre = np.array([genre_id or 0], np.int32)
    rng = np.random.default_rng(seed)
    out = np.empty(int(n_samples), np.int32)
    for i in range(int(n_samples)):
        start = max(0, len(codes) - config.window_field) // rate * rate
        logits = np.asarray(forward(*config.model_inputs(np.array(codes[start:], np.int32)[None], genre))[0],
                            np.float64)
        code = _draw_code(logits, temperature, rng)
        out[i] = code
        codes.append(code)
    return out
