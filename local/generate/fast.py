"""Fast WaveNet generation: one compiled numba loop over time with per-layer caches (the Fast WaveNet idea).

The full model recomputes every layer over the whole receptive field for each new sample. Here each layer
keeps a ring buffer of its own past inputs (the residual stream entering ``layer{i}_conv``), so one new
sample costs one matrix-vector product per tap and per 1x1 convolution: O(layers) work instead of
O(layers x receptive field). The whole loop - the layers, the softmax with temperature and the sampling
with a per-stream random generator - runs inside one numba function, so no Python runs per sample.

Any ``filter_width`` >= 2 works: tap j of a layer with dilation d reads the ring at t - (filter_width-1-j)*d,
exactly what Keras' causal Conv1D does (``conv_w`` stacks the taps' weights; each multiplies its own ring row).
Genre conditioning is a constant per stream, folded into each layer's convolution bias. The skip
convolutions of all layers are one product of the concatenated gates. Several streams (independent clips)
run at once: each thread takes a block of streams and every product multiplies the whole block by a weight
matrix in register blocks (:func:`_gemm`, :func:`_fma_block`): each weight vector, loaded once, serves 4 or
8 streams from registers. Each tap reads the streams' ring rows in place, and biases are the products'
starting values. No BLAS call (its fixed cost equals the product's on so few rows). Weights and activations
are float32 (fastmath). The vector width follows the target numba compiles for: 16 floats with AVX-512,
else 8 (AVX2); NUMBA_CPU_NAME=haswell with NUMBA_CPU_FEATURES without AVX-512 builds the AVX2 code anywhere.

Usage::

    weights = fold_weights(model, config)               # config: the run's WaveNetConfig (model.json)
    state = initial_state(weights, genre_ids=[0, 1, 2], seed=1)
    prime_state(model, weights, state, prime_codes)     # optional: one batched Keras pass over real audio
    codes = generate(weights, state, n_samples=16000, temperature=1.0)   # (streams, n_samples) int32

``generate`` continues from ``state``, so calling it in chunks (for a progress bar) gives the same codes
as one call. Streams are reproducible from ``seed`` alone: stream b's random numbers do not depend on how
many streams run or on how they are split between threads.
"""
import math
import time

import numba
import numpy as np

from local.generate.kernel import _context_step, _run_block, _run_blocks
from local.generate.weights import _NO_CONTEXT
from local.model.wavenet import LAYERS


def initial_state(weights, genre_ids=None, n_streams=None, seed=0, start_code=None):
    """The caches of ``n_streams`` streams before their first sample (the zero padding of the causal convs).

    ``genre_ids``: one genre per stream (needed when the model is conditioned; it sets ``n_streams``).
    ``seed``: stream b draws from xorshift64* seeded by splitmix64(seed, b), so each stream is reproducible
    on its own. ``start_code``: the first input code (default Q//2, mu-law silence).
    Returns a dict: ``ring`` (streams, ring_rows, R) float32, ``t`` (the time of the next input),
    ``inputs`` (streams,) int64 (the next input code), ``rng`` (streams,) uint64, ``stream_bias``
    (streams, L, 2D), and the ring layout ``ring_offsets``/``ring_masks``. With a context stack also
    ``base_bias`` (the stream bias without the context), ``context_ring`` (streams, rows, C) with its layout
    ``context_offsets``/``context_masks`` (a power-of-two ring per context layer) and ``frame_codes`` (streams,
    rate) int64 (the codes of the frame in progress, slot t % rate): the context stack has already taken
    ``context_past`` codes of silence (Q//2), as :meth:`local.model.wavenet.WaveNetConfig.pad_context` feeds the model.
    """
    conditioned = weights["config"].conditioned
    if genre_ids is None:
        if conditioned:
            raise ValueError("this model is genre-conditioned: pass one genre id per stream")
        genre_ids = [0] * int(n_streams or 1)
    genre_ids = np.asarray(genre_ids, dtype=np.int64).reshape(-1)
    if n_streams is not None and len(genre_ids) != n_streams:
        raise ValueError(f"{len(genre_ids)} genre ids for {n_streams} streams")
    n_streams = len(genre_ids)
    bias = np.repeat(weights["conv_b"][None], n_streams, axis=0)
    if conditioned:
        n_genres = weights["genre_embedding"].shape[0]
        if genre_ids.min() < 0 or genre_ids.max() >= n_genres:
            raise ValueError(f"genre ids {genre_ids.tolist()} outside 0..{n_genres - 1}")
        vectors = weights["genre_embedding"][genre_ids]  # (streams, G)
        bias = bias + np.einsum("bg,lgc->blc", vectors, weights["cond_w"])
    width = weights["filter_width"]
    sizes = [1 << int(math.ceil(math.log2((width - 1) * int(d) + 1))) for d in weights["dilations"]]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    n_q, n_res = weights["embedding"].shape
    state = {
        "ring": np.zeros((n_streams, int(sum(sizes)), n_res), np.float32),
        "ring_offsets": offsets, "ring_masks": np.array(sizes, np.int64) - 1,
        "t": 0,
        "inputs": np.full(n_streams, n_q // 2 if start_code is None else int(start_code), np.int64),
        "rng": np.array([_splitmix64(seed, b) for b in range(n_streams)], np.uint64),
        "stream_bias": np.ascontiguousarray(bias.astype(np.float32)),
        "genre_ids": genre_ids,
    }
    if weights["context"] is not None:
        _reset_context(weights, state)
    return state


def _reset_context(weights, state, silent_frames=None):
    """Empty context caches (the context stack's causal zero padding), then ``silent_frames`` frames of silence
    (default: the ``context_past`` codes a track starts with)."""
    context, config = weights["context"], weights["config"]
    n_streams, width = len(state["inputs"]), weights["filter_width"]
    channels = context["embedding"].shape[1]
    state.setdefault("base_bias", state["stream_bias"].copy())
    np.copyto(state["stream_bias"], state["base_bias"])
    sizes = [1 << int(math.ceil(math.log2((width - 1) * int(d) + 1))) for d in context["dilations"]]
    state["context_ring"] = np.zeros((n_streams, int(sum(sizes)), channels), np.float32)
    state["context_offsets"] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    state["context_masks"] = np.array(sizes, np.int64) - 1
    state["frame_codes"] = np.full((n_streams, context["rate"]), config.quantization_channels // 2, np.int64)
    for frame in range(config.context_receptive_frames if silent_frames is None else silent_frames):
        advance_context(weights, state, frame)


def _context_args(weights, state):
    """The kernel's context arguments (empty arrays and rate 0 without a context stack)."""
    context = weights["context"]
    if context is None:
        n_streams = len(state["inputs"])
        return (0, np.zeros((n_streams, 0), np.int64), _NO_CONTEXT["embedding"], _NO_CONTEXT["conv_w"],
                _NO_CONTEXT["conv_b"], _NO_CONTEXT["res_w"], _NO_CONTEXT["res_b"], _NO_CONTEXT["dilations"],
                np.zeros((n_streams, 0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                _NO_CONTEXT["ctx_w"], np.zeros((n_streams, 0), np.float32))
    return (int(context["first_frame"]), state["frame_codes"], context["embedding"], context["conv_w"],
            context["conv_b"], context["res_w"], context["res_b"], context["dilations"], state["context_ring"],
            state["context_offsets"], state["context_masks"], context["ctx_w"],
            state["base_bias"].reshape(len(state["inputs"]), -1))


def _plan_args(state, plan_bias, plan_hop, n_samples):
    """The kernel's plan arguments: (plan_bias (streams, F, L*2D), plan_hop), or an empty array and 0."""
    n_streams = len(state["inputs"])
    if plan_bias is None:
        return np.zeros((n_streams, 0, 0), np.float32), 0
    plan_bias = np.asarray(plan_bias, np.float32)
    if plan_bias.shape[1] * plan_hop < state["t"] + n_samples:
        raise ValueError(f"{plan_bias.shape[1]} plan frames of {plan_hop} samples cannot cover sample "
                         f"{state['t'] + n_samples - 1}")
    return np.ascontiguousarray(plan_bias.reshape(n_streams, plan_bias.shape[1], -1)), int(plan_hop)


def advance_context(weights, state, frame):
    """Feed the context stack frame number ``frame`` of every stream (its codes in ``state["frame_codes"]``,
    frames counted from the start of the silence a stream starts with) and set the streams' biases to its
    conditioning. The kernel does the same at each frame boundary. Modifies ``state``."""
    args = _context_args(weights, state)
    n_streams = len(state["inputs"])
    _context_step(0, n_streams, int(frame), *args[1:-1], args[-1],
                  state["stream_bias"].reshape(n_streams, -1))


def _splitmix64(seed, stream):
    """A well-mixed nonzero 64-bit state for (seed, stream) (splitmix64's finalizer)."""
    mask = (1 << 64) - 1
    z = (int(seed) * 0x9E3779B97F4A7C15 + (int(stream) + 1) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) or 1


def layer_input_model(model, config):
    """A Keras model (same inputs) whose outputs are the inputs of every ``layer{i}_conv``: (batch, time, R)."""
    import keras
    return keras.Model(model.inputs, [model.get_layer(LAYERS.conv(i)).input for i in range(config.n_layers)])


def prime_state(model, weights, state, prime_codes, batch_rows=4):
    """Fill the caches from real audio: every stream continues ``prime_codes`` (n,) as if it had played them.

    One batched Keras forward pass over the prime (per distinct genre, ``batch_rows`` genres at a time)
    gives every layer's inputs at every time; the last ones go into the ring buffers. Only the last
    2 x receptive_field codes matter, so a long prime costs no more than that. With a context stack the pass
    starts on a frame boundary and reads context_past codes more (before the prime: the silence a track
    starts with), and :func:`advance_context` refills the context caches from the prime's last frames.
    Modifies ``state``.
    """
    prime_codes = np.asarray(prime_codes, dtype=np.int64).reshape(-1)
    if len(prime_codes) == 0:
        return state
    n_total = len(prime_codes)
    config = weights["config"]
    past, rate = config.context_past, max(1, config.context_rate)
    # the sample stack's pass starts at `start` (a frame boundary with a context: the model's frames align there)
    start = max(0, n_total - 1 - 2 * weights["receptive_field"]) // rate * rate
    padded = config.pad_context(prime_codes)  # stream time t is padded position past + t
    context = padded[start:past + n_total - 1]  # the last code is the kernel's first input
    state["inputs"][:] = prime_codes[-1]
    state["t"] = n_total - 1
    if weights["context"] is not None:
        _prime_context(weights, state, padded)
    if n_total == 1:
        return state
    sub = layer_input_model(model, config)
    conditioned = config.conditioned
    genres = np.unique(state["genre_ids"]) if conditioned else np.zeros(1, np.int64)
    width = weights["filter_width"]
    for first in range(0, len(genres), batch_rows):
        rows = genres[first:first + batch_rows]
        acts = sub.predict_on_batch(config.model_inputs(np.repeat(context[None], len(rows), axis=0).astype(np.int32),
                                                        rows.astype(np.int32)))
        acts = acts if isinstance(acts, (list, tuple)) else [acts]
        for layer, act in enumerate(acts):
            span = (width - 1) * int(weights["dilations"][layer])
            times = np.arange(max(start, n_total - 1 - span), n_total - 1)
            slots = state["ring_offsets"][layer] + (times & state["ring_masks"][layer])
            for row, genre in enumerate(rows):
                streams = np.nonzero(state["genre_ids"] == genre)[0] if conditioned else np.arange(
                    len(state["inputs"]))
                for b in streams:
                    state["ring"][b, slots] = np.asarray(act[row])[times - start]
    return state


def _prime_context(weights, state, padded):
    """The context caches after the frames of ``padded`` (silence, then the prime) that end before the kernel's
    next input: the last 2 x context_receptive_frames of them fed from empty caches (exact: earlier frames
    no longer reach the caches)."""
    config = weights["config"]
    rate = config.context_rate
    t = state["t"]  # the kernel's next input, at padded position context_past + t
    done = (config.context_past + t) // rate  # whole frames before it
    _reset_context(weights, state, silent_frames=0)
    for frame in range(max(0, done - 2 * config.context_receptive_frames), done):
        state["frame_codes"][:] = padded[frame * rate:(frame + 1) * rate]
        advance_context(weights, state, frame)
    in_progress = np.arange(t - t % rate, t)
    state["frame_codes"][:, in_progress % rate] = padded[config.context_past + in_progress]


def generate(weights, state, n_samples, temperature=1.0, *, forced_codes=None, record=False, threads=None,
             min_p=0.0, plan_bias=None, plan_hop=0):
    """Generate ``n_samples`` codes for every stream of ``state``, continuing (and advancing) it.

    ``temperature``: logits are divided by it before the softmax; 0 picks the most likely code.
    ``forced_codes``: optional (streams, n_samples) int codes fed instead of the sampled ones (-1 = sample):
    teacher forcing, used to check the kernel against the full model. ``record``: also return the
    distributions the codes were drawn from and the logits, both (streams, n_samples, Q) float32.
    ``threads``: how many threads share the streams (default: numba's, at most one per stream).
    ``min_p``: > 0 drops the codes less likely than min_p x the most likely one before sampling (min-p).
    ``plan_bias`` (streams, F, L, 2D) and ``plan_hop``: a renderer's per-frame plan terms
    (local/generate/rendering.py): sample t plays frame t // plan_hop (F frames must cover state["t"] + n).
    Returns codes (streams, n_samples) int32, or (codes, probabilities, logits) when ``record``.

    With a context stack the kernel also advances it at each frame boundary (for its own streams, on its own
    thread): the input at t = k * rate - 1 ends a frame, and that frame conditions that very position.
    """
    n_streams = len(state["inputs"])
    n_samples = int(n_samples)
    n_q = weights["embedding"].shape[0]
    out_codes = np.zeros((n_streams, n_samples), np.int32)
    out_probs = np.zeros((n_streams, n_samples if record else 0, n_q), np.float32)
    out_logits = np.zeros_like(out_probs)
    forced = (np.zeros((n_streams, 0), np.int64) if forced_codes is None
              else np.ascontiguousarray(np.asarray(forced_codes, dtype=np.int64).reshape(n_streams, n_samples)))
    threads = min(n_streams, int(threads or numba.get_num_threads()))
    starts = np.linspace(0, n_streams, threads + 1).round().astype(np.int64)
    args = (weights["embedding"], weights["conv_w"], state["stream_bias"], weights["skip_w"], weights["skip_b"],
            weights["res_w"], weights["res_b"], weights["post1_w"], weights["post1_b"], weights["post2_w"],
            weights["post2_b"], weights["dilations"], state["ring"], state["ring_offsets"], state["ring_masks"],
            int(state["t"]), state["inputs"], n_samples, float(temperature), float(min_p), state["rng"], forced,
            out_codes,
            out_probs, out_logits, *_context_args(weights, state), *_plan_args(state, plan_bias, plan_hop, n_samples))
    if n_samples > 0:
        if threads <= 1:
            _run_block(0, n_streams, *args)
        else:
            _run_blocks(starts, *args)
    state["t"] += n_samples
    return (out_codes, out_probs, out_logits) if record else out_codes


# --- stage 4's streams (run_model_predictions.py; its clips are written by local/clips.py) ------------------

def stream_genres(genres, *, conditioned, genre="", streams=0, prime_genre=None):
    """The genre name of each clip: ``genre`` for all, else the prime track's genre, else cycling through the
    genres (one clip each by default) for a conditioned model; ``streams`` clips (0 = the default count)."""
    if genre:
        return [genre] * (streams or 1)
    if prime_genre is not None and conditioned and prime_genre in genres:
        return [prime_genre] * (streams or 1)
    if conditioned:
        return [genres[k % len(genres)] for k in range(streams or len(genres))]
    return [genres[0] if len(genres) == 1 else ""] * (streams or 1)


def warm_up(weights, genre_ids, threads=0):
    """Compile (or load from numba's cache) the one-stream and the many-stream kernels; seconds it took."""
    started = time.perf_counter()
    for count in sorted({1, len(genre_ids)}):
        state = initial_state(weights, genre_ids=genre_ids[:count] if weights["config"].conditioned else None,
                              n_streams=count)
        generate(weights, state, 1, threads=threads)
    return time.perf_counter() - started


def generate_in_chunks(weights, state, n_samples, *, temperature, chunk, threads=0, progress=None, min_p=0.0,
                       plan_bias=None, plan_hop=0):
    """:func:`generate` in chunks of ``chunk`` samples (the same codes as one call), updating ``progress``
    (a tqdm-like object) after each; returns (codes (streams, n_samples) int32, seconds spent)."""
    pieces = []
    started = time.perf_counter()
    for done in range(0, n_samples, chunk):
        pieces.append(generate(weights, state, min(chunk, n_samples - done), temperature, threads=threads,
                               min_p=min_p, plan_bias=plan_bias, plan_hop=plan_hop))
        if progress is not None:
            progress.update(pieces[-1].size)
    return np.concatenate(pieces, axis=1), time.perf_counter() - started
