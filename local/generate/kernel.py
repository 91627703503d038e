"""The per-sample kernel of the fast generator: one compiled step over a block of streams through the context
stack, every gated layer, the skip and output layers and the sampler (see :mod:`local.generate.fast`).
"""

import numpy as np
from numba import njit, prange

from local.generate.simd import _JIT, _exp_nonpositive, _gate, _gemm, _next_uniform, _relu


@njit(**_JIT)
def _softmax_sample(logits, weights, temperature, min_p, rng, b, forced_code, probs):
    """The code of one stream: softmax(logits / temperature) sampled by inverse CDF with stream b's generator
    (the most likely code when temperature <= 0; ``forced_code`` >= 0 instead when given). ``min_p`` > 0 first
    drops the codes less likely than min_p times the most likely one (min-p sampling: the tail a renderer
    would play as hiss). ``weights`` (Q,) float32 scratch; ``probs`` (Q,) receives the distribution drawn from
    when it is non-empty."""
    n_q = logits.shape[0]
    top = logits[0]  # not -inf: fastmath lets LLVM assume there are no infinities
    for c in range(1, n_q):
        top = max(top, logits[c])
    inv_temperature = np.float32(1.0 / temperature) if temperature > 0 else np.float32(1.0)
    for c in range(n_q):
        weights[c] = _exp_nonpositive((logits[c] - top) * inv_temperature)
    if min_p > 0:  # the top code's weight is 1
        for c in range(n_q):
            if weights[c] < min_p:
                weights[c] = 0.0
    total = 0.0
    for c in range(n_q):
        total += weights[c]
    if probs.shape[0] > 0:
        for c in range(n_q):
            probs[c] = weights[c] / total
    if forced_code >= 0:
        return forced_code
    if temperature <= 0:
        for c in range(n_q):
            if logits[c] == top:
                return c
    target = _next_uniform(rng, b) * total
    running = 0.0
    for c in range(n_q):
        running += weights[c]
        if running > target:
            return c
    return n_q - 1  # only reached through rounding at the very top of the distribution


@njit(**_JIT)
def _context_step(b0, b1, frame, frame_codes, ctx_embedding, ctx_conv_w, ctx_conv_b, ctx_res_w, ctx_res_b,
                  ctx_dilations, ctx_ring, ctx_offsets, ctx_masks, ctx_w, base_bias, stream_bias):
    """Feed frame number ``frame`` (its codes: frame_codes[b] (rate,)) of streams b0..b1-1 through the context
    stack and set their biases: stream_bias[b] = base_bias[b] + context vector @ ctx_w (all layers at once).

    Shapes: ctx_embedding (Q, C); ctx_conv_w (Lc, width*C, 2C) taps stacked as ``conv_w``; ctx_conv_b (Lc, 2C);
    ctx_res_w (Lc, C, C); ctx_res_b (Lc, C); ctx_ring (streams, rows, C) with ctx_offsets/ctx_masks (a
    power-of-two ring per context layer, slot = frame & mask: negative frames are the zero padding);
    ctx_w (C, L*2D); base_bias and stream_bias (streams, L*2D). Runs once per frame, not per sample.
    """
    n = b1 - b0
    n_ctx_layers, n_taps, n_ctx2 = ctx_conv_w.shape
    channels = n_ctx2 // 2
    width = n_taps // channels
    rate = frame_codes.shape[1]
    y = np.zeros((n, channels), np.float32)
    for b in range(n):
        for k in range(rate):
            code = frame_codes[b0 + b, k]
            for c in range(channels):
                y[b, c] += ctx_embedding[code, c]
        for c in range(channels):
            y[b, c] /= np.float32(rate)
    z = np.empty((n, n_ctx2), np.float32)
    gated = np.empty((n, channels), np.float32)
    rings = ctx_ring[b0:b1]
    for j in range(n_ctx_layers):
        offset, mask, dilation = ctx_offsets[j], ctx_masks[j], ctx_dilations[j]
        for b in range(n):
            for c in range(channels):
                rings[b, offset + (frame & mask), c] = y[b, c]
            for c in range(n_ctx2):
                z[b, c] = ctx_conv_b[j, c]
        for tap in range(width):
            row = offset + ((frame - (width - 1 - tap) * dilation) & mask)
            _gemm(rings[:, row, :], ctx_conv_w[j, tap * channels:(tap + 1) * channels], z, z)
        for b in range(n):
            for c in range(channels):
                gated[b, c] = _gate(z[b, c], z[b, channels + c])
        _gemm(gated, ctx_res_w[j], y, y)
        for b in range(n):
            for c in range(channels):
                y[b, c] += ctx_res_b[j, c]
    _gemm(y, ctx_w, base_bias[b0:b1], stream_bias[b0:b1])


@njit(**_JIT)
def _run_block(b0, b1, embedding, conv_w, stream_bias, skip_w, skip_b, res_w, res_b, post1_w, post1_b,
               post2_w, post2_b, dilations, ring, ring_offsets, ring_masks, t0, inputs, n_steps, temperature,
               min_p, rng, forced, out_codes, out_probs, out_logits, ctx_first_frame, frame_codes, ctx_embedding,
               ctx_conv_w, ctx_conv_b, ctx_res_w, ctx_res_b, ctx_dilations, ctx_ring, ctx_offsets, ctx_masks,
               ctx_w, base_bias, plan_bias, plan_hop):
    """Advance streams b0..b1-1 by n_steps samples; see :func:`generate` for the arguments.

    A renderer's plan (plan_bias (streams, F, L*2D), plan_hop > 0; else empty and 0): the input at t, t a
    multiple of plan_hop, first moves each stream's bias (and the context stack's base) from frame f-1's plan
    term to frame f = t // plan_hop's (from none at f = 0), so sample t plays frame t // plan_hop.

    With a context stack (frame_codes (streams, rate), rate > 0; else its arrays are empty) each input code
    also goes into its frame's slot t % rate, and the input that ends a frame (t % rate == rate - 1) first
    advances the context stack (:func:`_context_step`, frame ctx_first_frame + (t + 1) // rate - 1), whose
    conditioning then holds for that position and the rate - 1 after it.

    Shapes: conv_w (L, width*R, 2D) with tap j in rows j*R..(j+1)*R; skip_w (L*D, S) (all layers' skip
    convolutions as one product of the concatenated gates); res_w (L, D, R). Each tap of a layer's
    convolution multiplies the streams' ring rows where they lie (no copy); biases enter as the products'
    initial values.
    """
    n = b1 - b0
    n_layers, n_taps, n_gate2 = conv_w.shape
    n_res = res_w.shape[2]
    width = n_taps // n_res
    n_gate = n_gate2 // 2
    n_skip = skip_w.shape[1]
    n_q = post2_w.shape[1]
    record = out_probs.shape[1] > 0
    x = np.empty((n, n_res), np.float32)
    z = np.empty((n, n_gate2), np.float32)
    gates = np.empty((n, n_layers * n_gate), np.float32)
    s = np.empty((n, n_skip), np.float32)
    h = np.empty((n, n_skip), np.float32)
    logits = np.empty((n, n_q), np.float32)
    weights = np.empty(n_q, np.float32)
    no_probs = np.empty(0, np.float32)
    skip_init = np.empty((n, n_skip), np.float32)  # the biases once per stream, as the products' start
    post1_init = np.empty((n, n_skip), np.float32)
    post2_init = np.empty((n, n_q), np.float32)
    for b in range(n):
        skip_init[b] = skip_b
        post1_init[b] = post1_b
        post2_init[b] = post2_b
    rings = ring[b0:b1]
    rate = frame_codes.shape[1]
    flat_bias = stream_bias.reshape((stream_bias.shape[0], stream_bias.shape[1] * stream_bias.shape[2]))
    for step in range(n_steps):
        t = t0 + step
        if plan_hop > 0 and t % plan_hop == 0:
            f = t // plan_hop
            for b in range(b0, b1):
                for j in range(flat_bias.shape[1]):
                    delta = plan_bias[b, f, j] - (plan_bias[b, f - 1, j] if f > 0 else np.float32(0.0))
                    flat_bias[b, j] += delta
                    if base_bias.shape[1] > 0:  # (streams, L*2D) with a context stack, else (streams, 0)
                        base_bias[b, j] += delta
        if rate > 0:
            for b in range(n):
                frame_codes[b0 + b, t % rate] = inputs[b0 + b]
            if t % rate == rate - 1:
                _context_step(b0, b1, ctx_first_frame + (t + 1) // rate - 1, frame_codes, ctx_embedding, ctx_conv_w,
                              ctx_conv_b, ctx_res_w, ctx_res_b, ctx_dilations, ctx_ring, ctx_offsets, ctx_masks,
                              ctx_w, base_bias, flat_bias)
        for b in range(n):
            code = inputs[b0 + b]
            for c in range(n_res):
                x[b, c] = embedding[code, c]
        for layer in range(n_layers):
            offset = ring_offsets[layer]
            mask = ring_masks[layer]
            dilation = dilations[layer]
            now = offset + (t & mask)
            for b in range(n):
                for c in range(n_res):
                    rings[b, now, c] = x[b, c]
            for j in range(width):
                row = offset + ((t - (width - 1 - j) * dilation) & mask)
                _gemm(rings[:, row, :], conv_w[layer, j * n_res:(j + 1) * n_res],
                      stream_bias[b0:b1, layer] if j == 0 else z, z)
            for b in range(n):
                filters = z[b, :n_gate]
                gate_inputs = z[b, n_gate:]
                out = gates[b, layer * n_gate:(layer + 1) * n_gate]
                for c in range(n_gate):
                    out[c] = _gate(filters[c], gate_inputs[c])
            if layer < n_layers - 1:
                _gemm(gates[:, layer * n_gate:(layer + 1) * n_gate], res_w[layer], x, x)
                for b in range(n):
                    for c in range(n_res):
                        x[b, c] += res_b[layer, c]
        _gemm(gates, skip_w, skip_init, s)
        _relu(s)
        _gemm(s, post1_w, post1_init, h)
        _relu(h)
        _gemm(h, post2_w, post2_init, logits)
        for b in range(n):
            if record:
                for c in range(n_q):
                    out_logits[b0 + b, step, c] = logits[b, c]
            code = _softmax_sample(logits[b], weights, temperature, min_p, rng, b0 + b,
                                   forced[b0 + b, step] if forced.shape[1] > 0 else -1,
                                   out_probs[b0 + b, step] if record else no_probs)
            out_codes[b0 + b, step] = code
            inputs[b0 + b] = code


@njit(parallel=True, **_JIT)
def _run_blocks(starts, embedding, conv_w, stream_bias, skip_w, skip_b, res_w, res_b, post1_w, post1_b, post2_w,
                post2_b, dilations, ring, ring_offsets, ring_masks, t0, inputs, n_steps, temperature, min_p, rng,
                forced,
                out_codes, out_probs, out_logits, ctx_first_frame, frame_codes, ctx_embedding, ctx_conv_w, ctx_conv_b,
                ctx_res_w, ctx_res_b, ctx_dilations, ctx_ring, ctx_offsets, ctx_masks, ctx_w, base_bias, plan_bias,
                plan_hop):
    """Run each block of streams (starts[k]..starts[k+1]-1) on its own thread; blocks never synchronize (each
    advances its own streams' context stack)."""
    for k in prange(len(starts) - 1):
        _run_block(starts[k], starts[k + 1], embedding, conv_w, stream_bias, skip_w, skip_b, res_w, res_b,
                   post1_w, post1_b, post2_w, post2_b, dilations, ring, ring_offsets, ring_masks, t0, inputs,
                   n_steps, temperature, min_p, rng, forced, out_codes, out_probs, out_logits, ctx_first_frame,
                   frame_codes, ctx_embedding, ctx_conv_w, ctx_conv_b, ctx_res_w, ctx_res_b, ctx_dilations,
                   ctx_ring, ctx_offsets, ctx_masks, ctx_w, base_bias, plan_bias, plan_hop)
