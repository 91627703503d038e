"""local/generate/fast.py against the full Keras forward pass: exact distributions, priming, streams, seeds."""
import numpy as np
import pytest

from local.audio.waveform import clip_problem
from local.generate import fast as generate_fast
from local.generate import reference, simd
from local.generate import weights as generate_weights
from local.model.wavenet import WaveNetConfig, build_wavenet, receptive_field

DILATIONS = [1, 2, 4, 8, 1, 2]


def tiny_model(filter_width, conditioned, seed=0):
    """(model, config): a small WaveNet with every weight (biases included) random, so no path hides behind a zero."""
    config = WaveNetConfig(dilations=DILATIONS, filter_width=filter_width, residual_channels=8, dilation_channels=6,
                           skip_channels=12, quantization_channels=32, genre_conditioning=conditioned,
                           genre_channels=4, n_genres=3)
    model = build_wavenet(config)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.4, weight.shape).astype("float32"))
    return model, config


def feed(config, codes, genre_ids):
    """The model's inputs for codes (streams, time) and one genre id per stream (None when unconditioned)."""
    genre_ids = None if genre_ids is None else np.asarray(genre_ids, np.int32)
    return config.model_inputs(np.asarray(codes, np.int32), genre_ids)


def full_probabilities(model, config, codes, genre_ids, temperature):
    """softmax(logits / temperature) of the full Keras model on codes (streams, time)."""
    logits = np.asarray(model.predict_on_batch(feed(config, codes, genre_ids)), np.float64)
    scaled = logits / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    p = np.exp(scaled)
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("filter_width,conditioned", [(2, False), (2, True), (3, False), (3, True)])
def test_sampled_distributions_equal_the_full_forward_pass(filter_width, conditioned):
    model, config = tiny_model(filter_width, conditioned)
    weights = generate_weights.fold_weights(model, config)
    genre_ids = [2, 0, 1] if conditioned else None
    state = generate_fast.initial_state(weights, genre_ids=genre_ids, n_streams=3, seed=5)
    n = 3 * receptive_field(DILATIONS, filter_width)  # well past the receptive field: the rings wrap around
    codes, probs, logits = generate_fast.generate(weights, state, n, temperature=0.8, record=True)
    inputs = np.concatenate([np.full((3, 1), 16), codes[:, :-1]], axis=1)  # the start code, then the samples
    expected = full_probabilities(model, config, inputs, genre_ids, 0.8)
    assert np.abs(probs - expected).max() < 1e-4
    keras_logits = model.predict_on_batch(feed(config, inputs, genre_ids))
    assert np.abs(logits - keras_logits).max() < 1e-4
    assert len(np.unique(codes)) > 3  # really sampled, not stuck


@pytest.mark.parametrize("filter_width,conditioned,prime_length", [(2, True, 300), (3, False, 300), (3, True, 12)])
def test_priming_with_one_batched_pass_continues_the_track_exactly(filter_width, conditioned, prime_length):
    model, config = tiny_model(filter_width, conditioned, seed=1)
    weights = generate_weights.fold_weights(model, config)
    rng = np.random.default_rng(0)
    # 300 is longer than 2 receptive fields, so priming crops the context; 12 is shorter than one.
    # A structured signal, not noise.
    prime = ((np.sin(np.arange(prime_length) / 5.0) + 1) * 15.5).astype(np.int64) ^ rng.integers(0, 2, prime_length)
    genre_ids = [1, 1, 2] if conditioned else None
    state = generate_fast.initial_state(weights, genre_ids=genre_ids, n_streams=3, seed=2)
    generate_fast.prime_state(model, weights, state, prime)
    codes, probs, _ = generate_fast.generate(weights, state, 40, temperature=1.0, record=True)
    inputs = np.concatenate([np.repeat(prime[None], 3, axis=0), codes[:, :-1]], axis=1)
    expected = full_probabilities(model, config, inputs, genre_ids, 1.0)[:, len(prime) - 1:]
    assert np.abs(probs - expected).max() < 1e-4


def test_teacher_forcing_gives_the_model_distribution_at_every_position():
    model, config = tiny_model(2, False, seed=3)
    weights = generate_weights.fold_weights(model, config)
    track = np.random.default_rng(1).integers(0, 32, (2, 120))
    state = generate_fast.initial_state(weights, n_streams=2, start_code=0)
    state["inputs"][:] = track[:, 0]
    codes, probs, _ = generate_fast.generate(weights, state, 119, forced_codes=track[:, 1:], record=True)
    assert (codes == track[:, 1:]).all()
    assert np.abs(probs - full_probabilities(model, config, track[:, :-1], None, 1.0)).max() < 1e-4


def test_streams_are_reproducible_chunkable_and_independent_of_threads_and_batch():
    model, config = tiny_model(3, True, seed=4)
    weights = generate_weights.fold_weights(model, config)
    one_call = generate_fast.generate(weights, generate_fast.initial_state(weights, [0, 1, 2, 0], seed=7), 90, threads=1)
    state = generate_fast.initial_state(weights, [0, 1, 2, 0], seed=7)
    chunks = [generate_fast.generate(weights, state, n, threads=2) for n in (30, 1, 59)]
    assert (np.concatenate(chunks, axis=1) == one_call).all()
    # stream 1 alone (same seed, same position) draws the same codes as in the batch of four
    alone = generate_fast.initial_state(weights, [0, 1], seed=7)
    assert (generate_fast.generate(weights, alone, 90)[1] == one_call[1]).all()
    other_seed = generate_fast.generate(weights, generate_fast.initial_state(weights, [0, 1, 2, 0], seed=8), 90)
    assert (other_seed != one_call).any()
    assert (one_call[0] != one_call[3]).any()  # same genre, different streams: different clips


def test_temperature_zero_takes_the_most_likely_code():
    model, config = tiny_model(2, False, seed=5)
    weights = generate_weights.fold_weights(model, config)
    codes, probs, _ = generate_fast.generate(weights, generate_fast.initial_state(weights, n_streams=1), 50,
                                          temperature=0, record=True)
    assert (codes[0] == probs[0].argmax(axis=1)).all()


def test_fast_tanh_matches_numpy():
    x = np.linspace(-12, 12, 20001).astype(np.float32)
    approx = np.array([simd._tanh(v) for v in x[::7]])
    assert np.abs(approx - np.tanh(x[::7].astype(np.float64))).max() < 1e-6
    gates = np.array([simd._gate(a, b) for a, b in zip(x[::7], x[::-7])])
    exact = np.tanh(x[::7].astype(np.float64)) / (1 + np.exp(-x[::-7].astype(np.float64)))
    assert np.abs(gates - exact).max() < 1e-6


def test_fast_exp_matches_numpy():
    x = np.concatenate([np.linspace(-87, 0, 20001), [-1e-7, -0.3465736, -0.3465737]]).astype(np.float32)
    approx = np.array([simd._exp_nonpositive(v) for v in x[::3]], np.float64)
    exact = np.exp(x[::3].astype(np.float64))
    assert np.abs(approx / exact - 1).max() < 5e-7
    assert 0 <= simd._exp_nonpositive(np.float32(-200.0)) < 1e-37  # clamped, never a garbage scale


@pytest.mark.parametrize("n_rows", [1, 2, 3, 4, 5, 8, 9, 13])
def test_stream_product_equals_numpy_for_every_block_shape(n_rows):
    """_gemm against numpy on strided rows (as the ring buffer's), for output widths that use every block
    (several vectors, one vector, single leftover columns) and an init that is the output itself."""
    rng = np.random.default_rng(n_rows)
    for n_in, n_out in [(1, 7), (5, 16), (32, 64), (64, 100), (33, 256), (640, 40)]:
        ring = rng.standard_normal((n_rows, 3, n_in)).astype(np.float32)
        x = ring[:, 1, :]  # rows 3 * n_in floats apart
        w = rng.standard_normal((n_in, n_out)).astype(np.float32)
        bias = rng.standard_normal((n_rows, 2, n_out)).astype(np.float32)[:, 0, :]
        expected = bias.astype(np.float64) + x.astype(np.float64) @ w
        y = np.full((n_rows, n_out), np.nan, np.float32)
        simd._gemm(x, w, bias, y)
        assert np.abs(y - expected).max() < 1e-4 * np.sqrt(n_in), (n_in, n_out)
        simd._gemm(x, w, y, y)  # accumulate
        assert np.abs(y - (expected + x.astype(np.float64) @ w)).max() < 2e-4 * np.sqrt(n_in), (n_in, n_out)


def test_wide_model_with_many_streams_equals_the_full_forward_pass():
    """Channel counts where the product kernel's register blocks do the work (the tiny model's mostly fall
    to leftover columns), 9 streams (a full block of rows and a leftover row) on two threads."""
    config = WaveNetConfig(dilations=[1, 2, 4, 8, 16], filter_width=2, residual_channels=32, dilation_channels=32,
                           skip_channels=48, quantization_channels=64, genre_conditioning=True, genre_channels=4,
                           n_genres=3)
    model = build_wavenet(config)
    rng = np.random.default_rng(3)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.2, weight.shape).astype("float32"))
    weights = generate_weights.fold_weights(model, config)
    genre_ids = [k % 3 for k in range(9)]
    state = generate_fast.initial_state(weights, genre_ids=genre_ids, seed=2)
    codes, _, logits = generate_fast.generate(weights, state, 150, temperature=1.0, record=True, threads=2)
    inputs = np.concatenate([np.full((9, 1), 32), codes[:, :-1]], axis=1)
    assert np.abs(logits - model.predict_on_batch(feed(config, inputs, genre_ids))).max() < 1e-4
    assert len(np.unique(codes)) > 3


def test_naive_reference_agrees_with_fast_greedy_generation():
    model, config = tiny_model(2, True, seed=6)
    weights = generate_weights.fold_weights(model, config)
    fast = generate_fast.generate(weights, generate_fast.initial_state(weights, [2], seed=0), 25, temperature=0)[0]
    slow = reference.naive_generate(model, config, 25, genre_id=2, temperature=0)
    assert (fast == slow).all()


def test_genre_ids_are_checked():
    weights = generate_weights.fold_weights(*tiny_model(2, True))
    with pytest.raises(ValueError, match="genre"):
        generate_fast.initial_state(weights, n_streams=2)
    with pytest.raises(ValueError, match="outside"):
        generate_fast.initial_state(weights, [0, 3])


def test_constant_and_silent_clips_are_recognized():
    assert clip_problem(np.full(500, 77)) == "constant"
    assert clip_problem(np.random.default_rng(0).integers(127, 130, 500)) == "silent"  # about -70 dBFS
    assert clip_problem(np.random.default_rng(0).integers(0, 256, 500)) == ""


# --- the context stack (issue 18): the generator advances it once per frame -----------------------------

def context_model(conditioned, seed=0, rate=4):
    """(model, config): a tiny WaveNet with a context stack (frames of ``rate``), every weight random."""
    config = WaveNetConfig(dilations=[1, 2, 4, 8], filter_width=2, residual_channels=8, dilation_channels=6,
                           skip_channels=12, quantization_channels=32, genre_conditioning=conditioned,
                           genre_channels=4, n_genres=3, context_rate=rate, context_dilations=[1, 2, 4],
                           context_channels=5)
    model = build_wavenet(config)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.4, weight.shape).astype("float32"))
    return model, config


@pytest.mark.parametrize("streams", [1, 8])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("prime_length", [0, 21, 203])
def test_context_stack_generation_equals_the_full_forward_pass(streams, conditioned, prime_length):
    """Logits of the generator (in chunks that end inside and on frame boundaries) equal the full model's on
    the silence-padded track over many frame boundaries; primes shorter and longer than the whole model's
    receptive field (49 samples; 203 also makes priming crop)."""
    model, config = context_model(conditioned, seed=streams + prime_length)
    assert config.total_receptive_field == 49
    weights = generate_weights.fold_weights(model, config)
    genre_ids = [k % 3 for k in range(streams)] if conditioned else None
    state = generate_fast.initial_state(weights, genre_ids=genre_ids, n_streams=streams, seed=3)
    rng = np.random.default_rng(prime_length)
    prime = ((np.sin(np.arange(prime_length) / 3.0) + 1) * 15.5).astype(np.int64) ^ rng.integers(0, 2, prime_length)
    if prime_length:
        generate_fast.prime_state(model, weights, state, prime)
    chunks = [generate_fast.generate(weights, state, n, temperature=1.0, record=True, threads=2) for n in (7, 1, 4, 30)]
    codes, _, logits = (np.concatenate([c[k] for c in chunks], axis=1) for k in range(3))
    history = np.repeat(prime[None], streams, axis=0) if prime_length else np.full((streams, 1), 16)
    inputs = np.concatenate([history, codes[:, :-1]], axis=1)
    full = model.predict_on_batch(feed(config, config.pad_context(inputs), genre_ids))[:, history.shape[1] - 1:]
    assert logits.shape[1] == 42 and (42 + prime_length) // 4 >= 10  # across 10 frame boundaries
    assert np.abs(logits - full).max() < 1e-4
    assert len(np.unique(codes)) > 3


def test_context_stack_changes_the_logits_at_frame_boundaries():
    """The conditioning really moves: forcing the same codes after different frames changes the logits."""
    model, config = context_model(False, seed=9)
    weights = generate_weights.fold_weights(model, config)
    track = np.random.default_rng(2).integers(0, 32, (2, 60))
    track[1, 30:] = track[0, 30:]  # same last 30 codes (> receptive_field), different earlier frames
    state = generate_fast.initial_state(weights, n_streams=2)
    state["inputs"][:] = track[:, 0]
    _, _, logits = generate_fast.generate(weights, state, 59, forced_codes=track[:, 1:], record=True)
    assert np.abs(logits[0, 50:] - logits[1, 50:]).max() > 1e-3


def test_naive_reference_agrees_with_fast_generation_with_a_context_stack():
    model, config = context_model(True, seed=6)
    weights = generate_weights.fold_weights(model, config)
    fast = generate_fast.generate(weights, generate_fast.initial_state(weights, [2], seed=0), 15, temperature=0)[0]
    slow = reference.naive_generate(model, config, 15, genre_id=2, temperature=0)
    assert (fast == slow).all()
