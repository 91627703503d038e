"""SIMD building blocks of the fast generator, compiled by numba: a fast exact-enough tanh and gate, uniform
random numbers, and register-blocked matrix products (:func:`_gemm`) sized to the target's vector width.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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
