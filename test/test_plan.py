"""The plan (local/audio/plan.py) and the renderer: the plan function's shape and units, windows that carry it,
strict causality in codes and sensitivity to the plan, and the fast generator with a plan = the full pass."""
import numpy as np
import pytest

from local.audio.plan import FLOOR_DB, PlanSettings, plan_distance_db, plan_frames, plan_of_audio, plan_window
from local.audio.waveform import mu_law_encode
from local.dataset import windows
from local.generate import fast, rendering
from local.generate import weights as generate_weights
from local.model.wavenet import WaveNetConfig, build_wavenet

SETTINGS = PlanSettings(bands=40, hop=128, n_fft=512, sample_rate=8000)


def tone(frequency, seconds=1.0, rate=8000, level=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_plan_frames_shape_units_and_bands():
    y = tone(440.0)
    plan = plan_of_audio(y, SETTINGS)
    assert plan.shape == (1 + len(y) // 128, 40) and plan.dtype == np.float32
    import librosa
    centres = librosa.mel_frequencies(n_mels=42, fmin=30.0, fmax=4000.0)[1:-1]
    loudest = int(plan[10:-10].mean(axis=0).argmax())
    assert abs(centres[loudest] - 440.0) < 0.15 * 440.0  # the tone's band
    assert plan.min() >= FLOOR_DB - 1e-3 and plan[10:-10].max() > -30.0
    quieter = plan_of_audio(y * 0.1, SETTINGS)
    assert abs((plan[10:-10, loudest] - quieter[10:-10, loudest]).mean() - 20.0) < 0.5  # dB of power
    silence = plan_of_audio(np.zeros(4000, np.float32), SETTINGS)
    assert np.all(silence == np.float32(FLOOR_DB))


def test_plan_frames_hear_the_codes_and_a_slice_on_a_frame_agrees_with_the_track():
    y = tone(300.0, 2.0) + tone(1200.0, 2.0, level=0.2)
    codes = mu_law_encode(y)
    track = plan_frames(codes, SETTINGS)
    heard = plan_of_audio(y, SETTINGS)
    loud = heard > -50.0  # 8-bit mu-law adds its noise floor to the quiet bands only
    assert np.abs(track[loud] - heard[loud]).mean() < 1.0 and plan_distance_db(track, heard) < 4.0
    start = 40 * 128
    piece = plan_frames(codes[start:start + 4000], SETTINGS)
    margin = SETTINGS.n_fft // 2 // SETTINGS.hop
    assert np.abs(piece[margin:-margin - 1] - track[40 + margin:40 + len(piece) - margin - 1]).max() < 1e-3


def test_plan_window_repeats_the_edges():
    plan = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    window = plan_window(plan, 0, 4, 2)
    assert window.shape == (8, 3) and window[:3, 0].tolist() == [0, 0, 0] and window[-1, 0] == 5
    assert plan_window(plan, 8, 2, 2)[:, 0].tolist() == [6, 7, 8, 9, 9, 9]


def renderer(seed=0, conditioned=False, context=False, width=1):
    config = WaveNetConfig(dilations=(1, 2, 4, 8), residual_channels=8, dilation_channels=6, skip_channels=12,
                           quantization_channels=32, genre_conditioning=conditioned, genre_channels=4, n_genres=3,
                           context_rate=4 if context else 0, context_dilations=(1, 2), context_channels=4,
                           plan_bands=5, plan_hop=8, plan_channels=6, plan_width=width)
    model = build_wavenet(config)
    rng = np.random.default_rng(seed)
    for weight in model.weights:  # the plan projections start at zero: random here, so the plan is heard
        weight.assign(rng.normal(0.0, 0.4, weight.shape).astype("float32"))
    return model, config


def test_renderer_is_causal_in_codes_and_hears_the_plan():
    model, config = renderer()
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 32, (2, 64)).astype(np.int32)
    codes[1, :40] = codes[0, :40]  # differ only after position 39
    plan = rng.normal(-40, 10, (1, config.plan_frames_for(64), 5)).astype(np.float32)
    logits = np.asarray(model.predict_on_batch(config.model_inputs(codes, plan=np.repeat(plan, 2, axis=0))))
    assert np.abs(logits[0, :40] - logits[1, :40]).max() < 1e-5
    assert np.abs(logits[0, 40:] - logits[1, 40:]).max() > 1e-3
    other = plan.copy()
    other[0, -3:] += 20.0  # a later frame only: outputs before it (and before its look-ahead) stay
    changed = np.asarray(model.predict_on_batch(config.model_inputs(codes[:1], plan=other)))
    first_affected = (other.shape[1] - 3 - 2 * config.plan_width) * config.plan_hop
    assert np.abs(changed[0, :first_affected] - logits[0, :first_affected]).max() < 1e-5
    assert np.abs(changed[0, first_affected:] - logits[0, first_affected:]).max() > 1e-3
    with pytest.raises(ValueError, match="plan"):
        config.model_inputs(codes)


@pytest.mark.parametrize("conditioned,context,streams", [(False, False, 1), (True, False, 3), (True, True, 8)])
def test_fast_rendering_equals_the_full_pass(conditioned, context, streams):
    model, config = renderer(seed=streams, conditioned=conditioned, context=context)
    weights = generate_weights.fold_weights(model, config)
    genre_ids = [k % 3 for k in range(streams)] if conditioned else None
    n = 70  # ends inside a frame; 9 frame boundaries
    rng = np.random.default_rng(streams)
    plans = rng.normal(-40, 10, (streams, config.plan_frames_for(n), 5)).astype(np.float32)
    biases = rendering.plan_biases(model, config, plans)
    assert biases.shape == (streams, 9, 4, 12)
    state = fast.initial_state(weights, genre_ids=genre_ids, n_streams=streams, seed=2)
    codes, _, logits = fast.generate(weights, state, n, 1.0, record=True, threads=2, plan_bias=biases, plan_hop=8)
    inputs = np.concatenate([np.full((streams, 1), 16), codes[:, :-1]], axis=1)
    ids = None if genre_ids is None else np.asarray(genre_ids, np.int32)
    full = model.predict_on_batch(config.model_inputs(config.pad_context(inputs).astype(np.int32), ids, plans))
    assert np.abs(logits - np.asarray(full)).max() < 1e-4
    assert len(np.unique(codes)) > 3
    again = fast.initial_state(weights, genre_ids=genre_ids, n_streams=streams, seed=2)
    chunked, _ = fast.generate_in_chunks(weights, again, n, temperature=1.0, chunk=13, plan_bias=biases, plan_hop=8)
    assert np.array_equal(chunked, codes)


def test_renderer_windows_start_on_a_frame_and_carry_the_tracks_plan():
    settings = PlanSettings(bands=5, hop=8, n_fft=32, sample_rate=8000, quantization_channels=32)
    codes = np.random.default_rng(0).integers(0, 32, 1600).astype(np.uint8)  # every window's codes unique
    plan = windows.WindowPlan(settings, width=1, context_past=0)
    field, window = 16, 20
    inputs, targets, frames = windows.plan_windows_from_codes(codes, field, window, [0, 3, 50, 1200], plan)
    track = plan_frames(codes, settings)
    for k in range(len(inputs)):
        start = int(np.flatnonzero((np.lib.stride_tricks.sliding_window_view(codes, inputs.shape[1])
                                    == inputs[k]).all(axis=1))[0])
        assert (start + 1) % 8 == 0  # its first output predicts the first sample of a frame
        n_frames = -(-(field + window - 1) // 8)
        assert np.array_equal(frames[k], plan_window(track, (start + 1) // 8, n_frames, 1))
    assert frames.shape == (4, -(-(field + window - 1) // 8) + 2, 5)
    assert np.array_equal(targets[:, :-1], inputs[:, field:])


def test_spark_executors_compute_the_same_plan(spark, tmp_path):
    """The plan function is one function: on Spark's executors, over the dataset's Parquet rows, it gives the
    laptop's frames bit for bit (what a Spark twin of the window reader would feed the renderer)."""
    from test_predictions import save_dataset

    from local.store import dataset_files
    rows = save_dataset(str(tmp_path / "processed"))
    settings = PlanSettings(bands=16, hop=64, n_fft=256, sample_rate=8000)
    tracks = spark.read.parquet(str(tmp_path / "processed" / "tracks")).select("track_id", "codes")

    def plans(partition, settings=settings):
        from local.audio.plan import plan_frames as executor_plan
        for row in partition:
            yield row["track_id"], executor_plan(np.frombuffer(row["codes"], np.uint8), settings).tobytes()

    on_executors = dict(tracks.rdd.mapPartitions(plans).collect())
    index = dataset_files.read_index(str(tmp_path / "processed"))
    assert len(on_executors) == len(rows) == len(index)
    for row in index:
        laptop = plan_frames(dataset_files.read_track_codes(row), settings)
        assert np.frombuffer(on_executors[row["track_id"]], np.float32).tobytes() == laptop.tobytes()


def test_code_noise_jitters_the_inputs_only_and_resumes_exactly():
    rng = np.random.default_rng(3)
    tracks = {k: rng.integers(0, 256, 3000).astype(np.uint8) for k in range(3)}
    rows = [{"track_id": str(k), "n_samples": 3000, "genre_id": k} for k in tracks]

    def stream(noise):
        return windows.TrainStream(rows, 64, 100, 4, seed=5, read_codes=lambda row: tracks[int(row["track_id"])],
                                   code_noise=noise)

    clean, noisy = stream(0.0).batches(), stream(2.0).batches()
    for _ in range(3):
        (x, y), (xn, yn) = next(clean), next(noisy)
        assert np.array_equal(y, yn)  # the targets stay the real codes
        difference = xn["codes"] - x["codes"]
        assert 1.5 < difference.std() < 2.5 and xn["codes"].min() >= 0 and xn["codes"].max() <= 255
    resumed = stream(2.0).batches(examples_done=8)
    third = stream(2.0).batches()
    for _ in range(2):
        next(third)
    assert np.array_equal(next(resumed)[0]["codes"], next(third)[0]["codes"])


def test_min_p_drops_the_improbable_tail_and_renormalises():
    model, config = renderer(seed=4)
    weights = generate_weights.fold_weights(model, config)
    plans = np.random.default_rng(4).normal(-40, 10, (2, config.plan_frames_for(40), 5)).astype(np.float32)
    biases = rendering.plan_biases(model, config, plans)
    full_state = fast.initial_state(weights, n_streams=2, seed=1)
    _, full, _ = fast.generate(weights, full_state, 40, record=True, plan_bias=biases, plan_hop=8)
    cut_state = fast.initial_state(weights, n_streams=2, seed=1)
    codes, cut, _ = fast.generate(weights, cut_state, 40, record=True, min_p=0.2, plan_bias=biases, plan_hop=8,
                                     forced_codes=np.full((2, 40), -1))
    first = full[:, :1]  # the same first step: same logits, so the same distribution before the cut
    kept = first >= 0.2 * first.max(axis=-1, keepdims=True)
    assert np.all(cut[:, :1][~kept] == 0) and np.allclose(cut[:, :1].sum(axis=-1), 1, atol=1e-5)
    assert np.allclose(cut[:, :1][kept], (first * kept / (first * kept).sum(-1, keepdims=True))[kept], atol=1e-5)
    assert kept.sum() < kept.size  # there was a tail to cut
    chosen = np.take_along_axis(cut, codes[..., None].astype(np.int64), axis=-1)
    assert np.all(chosen > 0)  # every code drawn was kept


def test_pre_emphasis_round_trips_and_the_plan_stays_the_tracks():
    from local.audio.waveform import de_emphasize, emphasize, mu_law_decode
    y = tone(200.0, 0.5) + tone(3000.0, 0.5, level=0.2)
    e = emphasize(y, 0.85)
    assert np.abs(de_emphasize(e, 0.85) - y).max() < 1e-5 and np.abs(e).max() <= 1.0
    high, low = np.abs(np.fft.rfft(e)), np.abs(np.fft.rfft(y))
    bins = np.fft.rfftfreq(len(y), 1 / 8000)
    at = lambda f: int(np.argmin(np.abs(bins - f)))  # noqa: E731
    assert high[at(3000)] / high[at(200)] > 3 * low[at(3000)] / low[at(200)]  # the highs lifted against the lows
    codes = mu_law_encode(y)
    config = WaveNetConfig(dilations=(1, 2), plan_bands=5, plan_hop=8, pre_emphasis=0.85, quantization_channels=256)
    model_codes = config.model_codes(codes)
    back = mu_law_decode(config.audio_codes(model_codes[None])[0])
    assert np.abs(back - mu_law_decode(codes)).max() < 0.05  # two mu-law roundings apart
    settings = PlanSettings(bands=5, hop=8, n_fft=32, sample_rate=8000)
    plan = windows.WindowPlan(settings, width=1)
    x, y_, frames = windows.plan_windows_from_codes(codes, 16, 20, [40], plan, config.model_codes)
    start = int(plan.align([40], len(codes) - 36)[0])
    assert np.array_equal(x[0], model_codes[start:start + 35])
    assert np.array_equal(y_[0], model_codes[start + 16:start + 36])
    assert np.array_equal(frames[0], plan_window(plan_frames(codes, settings), (start + 1) // 8, 5, 1))
    with pytest.raises(Exception, match="pre_emphasis"):
        WaveNetConfig(dilations=(1, 2), pre_emphasis=0.85)
