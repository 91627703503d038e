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
import weakref

import numpy as np
import numba
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from local.wavenet import structure_mismatch


# Built with error_model="numpy": a float division then needs no zero check, which is what kept LLVM from
# vectorizing the gate loop (measured: the gates of 20 layers 4.1 -> 0.6 us per stream and sample).
_JIT = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")
# The exponential keeps its Cody-Waite range reduction exact: no reassociation there.
_EXACT_JIT = dict(fastmath={"nnan", "ninf", "nsz", "arcp", "contract", "afn"}, cache=True, nogil=True,
                  error_model="numpy")

# float32 tanh as a rational function (the minimax approximation Eigen uses for its vectorized tanh):
# plain multiply/add/divide, so LLVM vectorizes the gate loop, where libm's tanh and exp are one call per
# element. Max error about 2e-7 on the clamped range, far below 1e-4; sigmoid(x) = (1 + tanh(x/2)) / 2.
_TANH_CLAMP = 7.90531110763549805
_A1, _A3, _A5, _A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08
_A9, _A11, _A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
_B0, _B2, _B4, _B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _compile_target_has_avx512():
    """Whether numba compiles for a CPU with AVX-512 (its features: NUMBA_CPU_FEATURES, else the host's)."""
    import llvmlite.binding
    features = numba.core.config.CPU_FEATURES or llvmlite.binding.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


# The product kernel's vector (floats) and block shape for the compile target. AVX2 has 16 vector registers:
# 4 rows x 3 vectors = 12 accumulators. AVX-512 has 32 of 16 floats: 8 rows x 2 vectors = 16 accumulators.
_LANES, _BLOCK_ROWS, _BLOCK_VECTORS = (16, 8, 2) if _compile_target_has_avx512() else (8, 4, 3)


@njit(**_JIT)
def _tanh_fraction(x):
    """(p, q) with tanh(x) = p / q (q > 0): the rational approximation's two polynomials, by Horner's rule."""
    x = min(max(x, np.float32(-_TANH_CLAMP)), np.float32(_TANH_CLAMP))
    x2 = x * x
    f = np.float32
    p = ((((((x2 * f(_A13) + f(_A11)) * x2 + f(_A9)) * x2 + f(_A7)) * x2 + f(_A5)) * x2 + f(_A3)) * x2 + f(_A1)) * x
    q = ((x2 * f(_B6) + f(_B4)) * x2 + f(_B2)) * x2 + f(_B0)
    return p, q


@njit(**_JIT)
def _tanh(x):
    p, q = _tanh_fraction(x)
    return p / q


@njit(**_JIT)
def _gate(filter_input, gate_input):
    """tanh(filter_input) * sigmoid(gate_input) with one division: sigmoid(x) = (1 + tanh(x/2)) / 2, so the
    product is pf (qg + pg) / (2 qf qg) (divisions are the slow part of the vectorized loop)."""
    pf, qf = _tanh_fraction(filter_input)
    pg, qg = _tanh_fraction(np.float32(0.5) * gate_input)
    return pf * (qg + pg) / (np.float32(2.0) * qf * qg)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of the integer ``bits`` (a register
    reinterpretation; vectorizes)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = args[0] if bits.bitwidth == 32 else builder.trunc(args[0], _I32)
        return builder.bitcast(low, _F32)

    return types.float32(bits), codegen


@njit(**_EXACT_JIT)
def _exp_nonpositive(x):
    """exp(x) in float32 for x <= 0 (Cephes' expf: 2**k times a degree-6 polynomial; about 1 ulp), in plain
    arithmetic so the softmax loop vectorizes; libm's exp is one call per element (no SVML here)."""
    x = max(x, np.float32(-87.0))  # exp(-87) ~ 1.6e-38, still a normal float32
    k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)  # Cody-Waite: ln 2 in two parts
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    return (p * r * r + r + np.float32(1.0)) * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(**_JIT)
def _next_uniform(rng, b):
    """xorshift64* step of stream b's state; a float64 in [0, 1) from its top 53 bits."""
    x = rng[b]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[b] = x
    return float((x * np.uint64(2685821657736338717)) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@intrinsic(prefer_literal=True)
def _fma_block(typingctx, x_addr, x_stride, w_addr, w_stride, n_in, init_addr, init_stride, y_addr, y_stride,
               rows, vectors):
    """y[b, :V*8] = init[b, :V*8] + sum_i x[b, i] * w[i, :V*8] for b < rows, in registers.

    The register-blocked heart of the product: rows x vectors accumulators of 8 floats stay in registers
    over the whole sum; each step loads ``vectors`` weight vectors once and uses them for every row (a
    broadcast of x[b, i] each). Written as LLVM IR because LLVM's vectorizers did not find this blocking
    in any loop numba lowers (they vectorize over one output row, reloading the weights for each stream).
    Addresses are in bytes, strides in floats (rows of x, w, init and y may lie anywhere: a stream's ring
    rows, per-stream biases); ``rows`` and ``vectors`` are literal ints, each pair one specialization.
    """
    if not isinstance(rows, types.IntegerLiteral) or not isinstance(vectors, types.IntegerLiteral):
        return None
    n_rows, n_vectors = rows.literal_value, vectors.literal_value
    signature = types.void(*([types.intp] * 9), rows, vectors)

    def codegen(context, builder, signature, args):
        x_addr, x_stride, w_addr, w_stride, n_in, init_addr, init_stride, y_addr, y_stride = args[:9]
        vector = ir.VectorType(_F32, _LANES)
        vector_ptr = vector.as_pointer()
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{_LANES}f32")

        def element(addr, stride, row, col):  # float* to [row, col] of a row-strided float32 matrix
            return builder.gep(builder.inttoptr(addr, _F32.as_pointer()),
                               [builder.add(builder.mul(stride, ir.Constant(_I64, row)), col)])

        def vector_at(addr, stride, row, v):
            return builder.bitcast(element(addr, stride, row, ir.Constant(_I64, _LANES * v)), vector_ptr)

        start = [builder.load(vector_at(init_addr, init_stride, b, v), align=4)
                 for b in range(n_rows) for v in range(n_vectors)]
        entry = builder.block
        loop = builder.append_basic_block("fma_block.loop")
        done = builder.append_basic_block("fma_block.done")
        zero = ir.Constant(_I64, 0)
        builder.cbranch(builder.icmp_signed(">", n_in, zero), loop, done)
        builder.position_at_end(loop)
        i = builder.phi(_I64)
        accumulators = [builder.phi(vector) for _ in start]
        weights = [builder.load(vector_at(builder.add(w_addr, builder.mul(builder.mul(i, w_stride),
                                                                          ir.Constant(_I64, 4))), zero, 0, v),
                                align=4) for v in range(n_vectors)]
        updated = []
        splat = ir.Constant(ir.VectorType(_I32, _LANES), [0] * _LANES)
        for b in range(n_rows):
            scalar = builder.load(element(x_addr, x_stride, b, i))
            broadcast = builder.shuffle_vector(
                builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(_I32, 0)),
                ir.Constant(vector, ir.Undefined), splat)
            updated += [builder.call(fma, [broadcast, weights[v], accumulators[b * n_vectors + v]])
                        for v in range(n_vectors)]
        i_next = builder.add(i, ir.Constant(_I64, 1))
        i.add_incoming(zero, entry)
        i.add_incoming(i_next, loop)
        for phi, first, last in zip(accumulators, start, updated):
            phi.add_incoming(first, entry)
            phi.add_incoming(last, loop)
        builder.cbranch(builder.icmp_signed("<", i_next, n_in), loop, done)
        builder.position_at_end(done)
        results = []
        for first, last in zip(start, updated):
            phi = builder.phi(vector)
            phi.add_incoming(first, entry)
            phi.add_incoming(last, loop)
            results.append(phi)
        for b in range(n_rows):
            for v in range(n_vectors):
                builder.store(results[b * n_vectors + v], vector_at(y_addr, y_stride, b, v), align=4)
        return context.get_dummy_value()

    return signature, codegen


# Block shapes, measured on an AVX2 target (NUMBA_CPU_NAME=haswell without AVX-512 features; GFLOP/s of
# 8 rows, against 80 for OpenBLAS's 1024x1024 sgemm on the same core): 4 rows x 3 vectors (12 accumulators,
# 7 loads per 12 multiply-adds) 63-81 on the model's 32x32 .. 640x128 products, 4x2 59-74, 8x1 61-74, the
# loop it replaces (one output row at a time) 38-57; for one row 1 x 4 vectors 30-45 against 19-38.
@njit(**_JIT)
def _gemm(x, w, init, y):
    """y (n, out) = init (n, out) + x (n, in) @ w (in, out): streams' rows by a weight matrix, no BLAS.

    Rows may be strided (a view across streams of the ring buffer, per-stream biases); every last axis must
    be contiguous. ``init`` may be ``y`` itself (accumulate). Whole blocks go to :func:`_fma_block`;
    leftover columns (fewer than 8) are summed one by one.
    """
    n, n_in = x.shape
    n_out = w.shape[1]
    x_addr, w_addr, init_addr, y_addr = x.ctypes.data, w.ctypes.data, init.ctypes.data, y.ctypes.data
    x_stride, w_stride = x.strides[0] // 4, w.strides[0] // 4
    init_stride, y_stride = init.strides[0] // 4, y.strides[0] // 4
    o = 0
    if n == 1:
        while o + 4 * _LANES <= n_out:
            _fma_block(x_addr, x_stride, w_addr + 4 * o, w_stride, n_in, init_addr + 4 * o, init_stride,
                       y_addr + 4 * o, y_stride, 1, 4)
            o += 4 * _LANES
    else:
        # Full-width bands while they fit, except that 4 vectors left go as two bands of 2 (a band of one
        # vector is load-bound: 5 loads per 4 multiply-adds): 64 columns = 24 + 24 + 16, 32 = 16 + 16.
        while o + _BLOCK_VECTORS * _LANES <= n_out and (n_out - o != 4 * _LANES or _BLOCK_VECTORS == 4):
            b = 0
            while b + _BLOCK_ROWS <= n:
                _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                           init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                           y_stride, _BLOCK_ROWS, _BLOCK_VECTORS)
                b += _BLOCK_ROWS
            while b + 4 <= n:
                _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                           init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                           y_stride, 4, _BLOCK_VECTORS)
                b += 4
            while b < n:
                _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                           init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                           y_stride, 1, _BLOCK_VECTORS)
                b += 1
            o += _BLOCK_VECTORS * _LANES
        while o + 2 * _LANES <= n_out:
            b = 0
            while b + 4 <= n:
                _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                           init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                           y_stride, 4, 2)
                b += 4
            while b < n:
                _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                           init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                           y_stride, 1, 2)
                b += 1
            o += 2 * _LANES
    while o + _LANES <= n_out:
        b = 0
        while b + 4 <= n:
            _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                       init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                       y_stride, 4, 1)
            b += 4
        while b < n:
            _fma_block(x_addr + 4 * b * x_stride, x_stride, w_addr + 4 * o, w_stride, n_in,
                       init_addr + 4 * (b * init_stride + o), init_stride, y_addr + 4 * (b * y_stride + o),
                       y_stride, 1, 1)
            b += 1
        o += _LANES
    for c in range(o, n_out):
        for b in range(n):
            total = init[b, c]
            for i in range(n_in):
                total += x[b, i] * w[i, c]
            y[b, c] = total


@njit(**_JIT)
def _relu(y):
    """y = max(y, 0), in place (its bias came in through :func:`_gemm`'s init)."""
    for b in range(y.shape[0]):
        for c in range(y.shape[1]):
            y[b, c] = max(y[b, c], np.float32(0.0))


@njit(**_JIT)
def _softmax_sample(logits, weights, temperature, rng, b, forced_code, probs):
    """The code of one stream: softmax(logits / temperature) sampled by inverse CDF with stream b's generator
    (the most likely code when temperature <= 0; ``forced_code`` >= 0 instead when given). ``weights`` (Q,)
    float32 scratch; ``probs`` (Q,) receives the distribution when it is non-empty."""
    n_q = logits.shape[0]
    top = logits[0]  # not -inf: fastmath lets LLVM assume there are no infinities
    for c in range(1, n_q):
        top = max(top, logits[c])
    inv_temperature = np.float32(1.0 / temperature) if temperature > 0 else np.float32(1.0)
    for c in range(n_q):
        weights[c] = _exp_nonpositive((logits[c] - top) * inv_temperature)
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
               rng, forced, out_codes, out_probs, out_logits, ctx_first_frame, frame_codes, ctx_embedding,
               ctx_conv_w, ctx_conv_b, ctx_res_w, ctx_res_b, ctx_dilations, ctx_ring, ctx_offsets, ctx_masks,
               ctx_w, base_bias):
    """Advance streams b0..b1-1 by n_steps samples; see :func:`generate` for the arguments.

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
            code = _softmax_sample(logits[b], weights, temperature, rng, b0 + b,
                                   forced[b0 + b, step] if forced.shape[1] > 0 else -1,
                                   out_probs[b0 + b, step] if record else no_probs)
            out_codes[b0 + b, step] = code
            inputs[b0 + b] = code


@njit(parallel=True, **_JIT)
def _run_blocks(starts, embedding, conv_w, stream_bias, skip_w, skip_b, res_w, res_b, post1_w, post1_b, post2_w,
                post2_b, dilations, ring, ring_offsets, ring_masks, t0, inputs, n_steps, temperature, rng, forced,
                out_codes, out_probs, out_logits, ctx_first_frame, frame_codes, ctx_embedding, ctx_conv_w, ctx_conv_b,
                ctx_res_w, ctx_res_b, ctx_dilations, ctx_ring, ctx_offsets, ctx_masks, ctx_w, base_bias):
    """Run each block of streams (starts[k]..starts[k+1]-1) on its own thread; blocks never synchronize (each
    advances its own streams' context stack)."""
    for k in prange(len(starts) - 1):
        _run_block(starts[k], starts[k + 1], embedding, conv_w, stream_bias, skip_w, skip_b, res_w, res_b,
                   post1_w, post1_b, post2_w, post2_b, dilations, ring, ring_offsets, ring_masks, t0, inputs,
                   n_steps, temperature, rng, forced, out_codes, out_probs, out_logits, ctx_first_frame,
                   frame_codes, ctx_embedding, ctx_conv_w, ctx_conv_b, ctx_res_w, ctx_res_b, ctx_dilations,
                   ctx_ring, ctx_offsets, ctx_masks, ctx_w, base_bias)


def fold_weights(model, config):
    """Read the WaveNet's weights by layer name into contiguous float32 arrays the kernel multiplies with.

    model   a Keras model built by :func:`local.wavenet.build_wavenet` (or loaded from model.keras)
    config  its :class:`local.wavenet.WaveNetConfig` (the structure comes from there; ValueError when the layers
            say otherwise: :func:`local.wavenet.structure_mismatch`)
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

    embedding = arrays("input_embedding")[0]
    convs = [arrays(f"layer{i}_conv") for i in range(n_layers)]
    skips = [arrays(f"layer{i}_skip") for i in range(n_layers)]
    width, n_res, n_gate2 = convs[0][0].shape
    n_skip = skips[0][0].shape[2]
    res_w = np.zeros((n_layers, n_gate2 // 2, n_res), np.float32)
    res_b = np.zeros((n_layers, n_res), np.float32)
    for i in range(n_layers - 1):
        kernel, bias = arrays(f"layer{i}_residual")
        res_w[i], res_b[i] = kernel[0], bias
    conditioned = config.conditioned
    post1_w, post1_b = arrays("postprocess1")
    post2_w, post2_b = arrays("postprocess2")
    dilations = np.array(config.dilations, np.int64)
    contiguous = np.ascontiguousarray
    return {
        "embedding": contiguous(embedding),
        "conv_w": contiguous(np.stack([c[0].reshape(width * n_res, n_gate2) for c in convs])),
        "conv_b": contiguous(np.stack([c[1] for c in convs])),
        "genre_embedding": contiguous(arrays("genre_embedding")[0]) if conditioned else None,
        "cond_w": contiguous(np.stack([arrays(f"layer{i}_cond")[0] for i in range(n_layers)]))
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
    convs = [arrays(f"context{j}_conv") for j in range(n_ctx)]
    residuals = [arrays(f"context{j}_residual") for j in range(n_ctx)]
    width, channels, n_ctx2 = convs[0][0].shape
    ctx_w = np.stack([arrays(f"layer{i}_ctx")[0] for i in range(config.n_layers)], axis=1)  # (C, L, 2D)
    contiguous = np.ascontiguousarray
    return {"embedding": contiguous(arrays("context_embedding")[0]),
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
    ``context_past`` codes of silence (Q//2), as :meth:`local.wavenet.WaveNetConfig.pad_context` feeds the model.
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
    return keras.Model(model.inputs, [model.get_layer(f"layer{i}_conv").input for i in range(config.n_layers)])


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


def generate(weights, state, n_samples, temperature=1.0, *, forced_codes=None, record=False, threads=None):
    """Generate ``n_samples`` codes for every stream of ``state``, continuing (and advancing) it.

    ``temperature``: logits are divided by it before the softmax; 0 picks the most likely code.
    ``forced_codes``: optional (streams, n_samples) int codes fed instead of the sampled ones (-1 = sample):
    teacher forcing, used to check the kernel against the full model. ``record``: also return the
    distributions the codes were drawn from and the logits, both (streams, n_samples, Q) float32.
    ``threads``: how many threads share the streams (default: numba's, at most one per stream).
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
            int(state["t"]), state["inputs"], n_samples, float(temperature), state["rng"], forced, out_codes,
            out_probs, out_logits, *_context_args(weights, state))
    if n_samples > 0:
        if threads <= 1:
            _run_block(0, n_streams, *args)
        else:
            _run_blocks(starts, *args)
    state["t"] += n_samples
    return (out_codes, out_probs, out_logits) if record else out_codes


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


def generate_in_chunks(weights, state, n_samples, *, temperature, chunk, threads=0, progress=None):
    """:func:`generate` in chunks of ``chunk`` samples (the same codes as one call), updating ``progress``
    (a tqdm-like object) after each; returns (codes (streams, n_samples) int32, seconds spent)."""
    pieces = []
    started = time.perf_counter()
    for done in range(0, n_samples, chunk):
        pieces.append(generate(weights, state, min(chunk, n_samples - done), temperature, threads=threads))
        if progress is not None:
            progress.update(pieces[-1].size)
    return np.concatenate(pieces, axis=1), time.perf_counter() - started
