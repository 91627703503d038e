"""The plan prior: causality in frames, its likelihood's normaliser, the incremental sampler against the Keras
model, priming, temperature 0, stage 3's --model=prior (evaluation.json, resume) and its one-line refusals."""
import json
import os

import numpy as np
import pytest
from test_training import write_tone_dataset

from local.audio.plan import PlanSettings
from local.core.config import StageError
from local.core.fileio import write_json_atomic
from local.generate import plan_sampling
from local.model import prior as model_prior
from local.store import rundir

SMALL = model_prior.PriorConfig(plan_bands=5, channels=8, layers=4, mixtures=2, genre_channels=4, n_genres=2,
                                dropout=0.0)
# a tone dataset at 1 kHz (3 s tracks): 8 bands of 64-sample frames, 47 frames a track
TINY_PRIOR = ["--model=prior", "--plan_bands=8", "--plan_hop=64", "--plan_n_fft=256", "--prior_layers=3",
              "--prior_channels=8", "--prior_window=8", "--prior_batch_size=4", "--prior_mixtures=2",
              "--prior_genre_channels=4", "--eval_every=2", "--checkpoint_every=3", "--seed=3"]


def random_model(config=SMALL, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    model = model_prior.build_prior(config)
    rng = np.random.default_rng(seed)  # weights far from the initial ones, so every path carries signal
    model.set_weights([w + 0.3 * rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_the_prior_is_causal_in_frames():
    model = random_model()
    rng = np.random.default_rng(1)
    a = rng.uniform(-80, 0, (1, 40, SMALL.plan_bands)).astype(np.float32)
    b = a.copy()
    b[:, 21:] = rng.uniform(-80, 0, (1, 19, SMALL.plan_bands))  # differ only after frame 20
    genre = np.array([1], np.int32)
    out_a, out_b = (np.asarray(model.predict_on_batch([x, genre])) for x in (a, b))
    np.testing.assert_allclose(out_a[:, :21], out_b[:, :21], atol=1e-5)
    assert np.abs(out_a[:, 21] - out_b[:, 21]).max() > 1e-3, "frame 21's output must see frame 21"
    assert np.abs(out_a - np.asarray(model.predict_on_batch([a, np.array([0], np.int32)]))).max() > 1e-3


def test_the_likelihood_sums_to_one_over_a_bands_bins_and_a_frame_sums_its_bands():
    rng = np.random.default_rng(2)
    bins = model_prior.bin_centres()
    assert bins[0] == model_prior.FLOOR_DB and bins[-1] == model_prior.CEILING_DB
    for scale in (0.01, 0.3, 2.0):  # narrow (one bin), moderate and wide components
        params = rng.standard_normal((1, SMALL.n_params_per_frame)).astype(np.float32)
        params.reshape(1, SMALL.plan_bands, 3, SMALL.mixtures)[:, :, 2] = np.log(scale)
        parts = model_prior.split_params(np.repeat(params, len(bins), 0), SMALL.plan_bands, SMALL.mixtures)
        log_p = np.asarray(model_prior.band_log_probs(np.repeat(bins[:, None], SMALL.plan_bands, 1), *parts))
        np.testing.assert_allclose(np.exp(log_p.astype(np.float64)).sum(axis=0), 1.0, atol=2e-4)
        frame = bins[rng.integers(len(bins), size=SMALL.plan_bands)][None]
        nll = float(np.asarray(model_prior.frame_nll(params, frame, SMALL.plan_bands, SMALL.mixtures))[0])
        picked = log_p[np.searchsorted(bins, frame[0]), np.arange(SMALL.plan_bands)]
        assert nll == pytest.approx(-picked.sum(), rel=1e-4)
    # a value between bins, below the floor or above the ceiling counts in its bin
    values = np.array([[-80.2, -80.0, -39.9, 30.0, 10.0]], np.float32)
    same = np.array([[-80.0, -80.0, -40.0, 10.0, 10.0]], np.float32)
    np.testing.assert_allclose(model_prior.frame_nll(params, values, 5, 2), model_prior.frame_nll(params, same, 5, 2))


def test_the_incremental_sampler_steps_as_the_keras_model():
    model = random_model(seed=4)
    rng = np.random.default_rng(4)
    frames = rng.uniform(-80, 0, (3, 30, SMALL.plan_bands)).astype(np.float32)
    genres = np.array([0, 1, 1], np.int32)
    expected = np.asarray(model.predict_on_batch([frames, genres]))
    stepper = plan_sampling.Stepper(model, SMALL, genres)
    got = np.stack([stepper.step(frames[:, t]) for t in range(frames.shape[1])], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_draws_follow_the_temperature():
    params = np.random.default_rng(5).standard_normal((2000, SMALL.n_params_per_frame)).astype(np.float32)
    params[1:] = params[0]
    cold = plan_sampling.draw_frame(params, SMALL, 0.0, np.random.default_rng(0))
    assert (cold == cold[0]).all(), "temperature 0 gives one value per band"
    spread = [plan_sampling.draw_frame(params, SMALL, t, np.random.default_rng(0)).std(axis=0).mean()
              for t in (0.3, 1.0)]
    assert 0 < spread[0] < spread[1]


def prior_run(data_dir, run_dir, *args):
    import run_model_training
    return run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_PRIOR, *args])


@pytest.mark.slow
def test_stage_3_trains_a_prior_resumes_it_and_its_plans_can_be_sampled(tmp_path, capsys):
    data_dir, run_dir = write_tone_dataset(tmp_path / "data"), str(tmp_path / "prior")
    summary = prior_run(data_dir, run_dir, "--prior_steps=6")
    assert summary["step"] == 6 and [r["step"] for r in rundir.read_metrics(run_dir)] == [2, 4, 6]
    again = prior_run(data_dir, run_dir, "--prior_steps=10")
    assert "from step 6" in capsys.readouterr().out and again["step"] == 10
    rows = rundir.read_metrics(run_dir)
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10]
    assert min(r["valid_bits_per_frame"] for r in rows) == pytest.approx(rows[-1]["valid_best_bits_per_frame"])
    info = rundir.read_model_json(run_dir)
    assert info["kind"] == "prior" and info["genres"] == ["Low", "High"] and info["receptive_field"] == 8
    assert {k: info["model"][k] for k in ("plan_bands", "plan_hop", "plan_n_fft")} == \
        {"plan_bands": 8, "plan_hop": 64, "plan_n_fft": 256}
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        evaluation = json.load(f)
    for key in ("valid_nll", "valid_baseline_nll", "test_nll", "test_baseline_nll"):
        assert np.isfinite(evaluation[key]) and evaluation[key] > 0, key
    assert evaluation["n_test_frames"] == 47 and evaluation["steps"] == 10

    loaded = plan_sampling.load_prior(run_dir)
    assert loaded.plan == PlanSettings(bands=8, hop=64, n_fft=256, sample_rate=1000)
    prime = np.linspace(-70, -20, 5 * 8, dtype=np.float32).reshape(5, 8)
    plans = plan_sampling.sample_plans(loaded, [0, 1, 1], 12, temperature=1.0, seed=7, prime=prime)
    assert plans.shape == (3, 12, 8) and plans.dtype == np.float32
    np.testing.assert_array_equal(plans[:, :5], np.broadcast_to(prime, (3, 5, 8)))
    assert not np.allclose(plans[0, 5:], plans[0, 4]), "the prior continues after the prime"
    same = plan_sampling.sample_plans(loaded, [0, 1, 1], 12, temperature=1.0, seed=7, prime=prime)
    other = plan_sampling.sample_plans(loaded, [0, 1, 1], 12, temperature=1.0, seed=8, prime=prime)
    np.testing.assert_array_equal(plans, same)
    assert not np.array_equal(plans, other)
    cold = [plan_sampling.sample_plans(loaded, [1, 1], 12, temperature=0.0, seed=s) for s in (1, 2)]
    np.testing.assert_array_equal(cold[0], cold[1])
    np.testing.assert_array_equal(cold[0][0], cold[0][1])
    assert plan_sampling.plan_mismatch(loaded, loaded.plan, run_dir) == ""
    refused = plan_sampling.plan_mismatch(loaded, PlanSettings(bands=80, hop=64, n_fft=256, sample_rate=1000), run_dir)
    assert "plan_bands 8/80" in refused and "\n" not in refused
    tagger = write_renderer(tmp_path / "tagger", kind="tagger")
    write_json_atomic(os.path.join(tagger, "model.keras"), {})
    with pytest.raises(StageError, match="is a tagger run, not a prior"):
        plan_sampling.load_prior(tagger)

def write_renderer(folder, **model):
    """A renderer run's model.json (what the prior reads of it)."""
    write_json_atomic(os.path.join(folder, "model.json"), {"kind": model.pop("kind", "wavenet"), "model": model,
                                                          "sample_rate": 1000, "genres": ["Low", "High"]})
    return str(folder)


@pytest.mark.parametrize("args, words", [
    (["--plan_bands=0"], ["--plan_bands=80", "--renderer_dir"]),
    (["--plan_bands=0", "--renderer_dir={plain}"], ["--renderer_dir=", "without a plan"]),
    (["--plan_bands=0", "--renderer_dir={tagger}"], ["tagger run"]),
    (["--plan_hop=32", "--renderer_dir={renderer}"], ["--plan_hop=32", "plan_hop=64"]),
    (["--prior_window=0"], ["--prior_window=0"]),
    (["--prior_input_noise=-1"], ["--prior_input_noise=-1"]),
])
def test_a_prior_with_no_plan_or_another_renderers_is_refused_in_one_line(tmp_path, capsys, args, words):
    import run_model_training
    data_dir = write_tone_dataset(tmp_path / "data")
    folders = {"plain": write_renderer(tmp_path / "plain", plan_bands=0),
               "tagger": write_renderer(tmp_path / "tagger", kind="tagger"),
               "renderer": write_renderer(tmp_path / "renderer", plan_bands=8, plan_hop=64, plan_n_fft=256)}
    with pytest.raises(SystemExit) as stopped:
        run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={tmp_path / 'run'}", *TINY_PRIOR,
                                 *[a.format(**folders) for a in args]])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.count("\n") == 1, error
    for word in words:
        assert word in error
    assert not os.path.exists(tmp_path / "run" / "model.json")


@pytest.mark.slow
def test_a_prior_takes_its_renderers_plan_keys(tmp_path):
    data_dir = write_tone_dataset(tmp_path / "data")
    renderer = write_renderer(tmp_path / "renderer", plan_bands=6, plan_hop=64, plan_n_fft=256, plan_fmin=40.0)
    prior_run(data_dir, tmp_path / "prior", "--plan_bands=0", "--plan_hop=256", f"--renderer_dir={renderer}",
              "--prior_steps=2")
    info = rundir.read_model_json(str(tmp_path / "prior"))
    assert (info["model"]["plan_bands"], info["model"]["plan_fmin"], info["renderer_dir"]) == (6, 40.0, renderer)


def test_a_frame_mixture_sums_to_one_over_every_frame_and_draws_one_component_per_frame():
    import dataclasses
    config = dataclasses.replace(SMALL, plan_bands=2, frame_mixture=True)
    rng = np.random.default_rng(7)
    params = rng.standard_normal((1, config.n_params_per_frame)).astype(np.float32)
    params.reshape(1, 2, 3, config.mixtures)[:, :, 2] = np.log(0.1)
    bins = model_prior.bin_centres()
    grid = np.stack(np.meshgrid(bins, bins, indexing="ij"), -1).reshape(-1, 2)  # every frame of 2 bands
    nll = np.asarray(model_prior.frame_nll(np.repeat(params, len(grid), 0), grid, 2, config.mixtures, True))
    assert np.exp(-nll.astype(np.float64)).sum() == pytest.approx(1.0, abs=2e-3)
    banded = np.asarray(model_prior.frame_nll(np.repeat(params, len(grid), 0), grid, 2, config.mixtures, False))
    assert np.abs(nll - banded).max() > 1e-3  # another likelihood than the per-band mixture's
    # well-separated components: a drawn frame's bands all come from one of them
    p = np.zeros((4000, 2, 3, config.mixtures), np.float32)
    p[:, :, 1] = np.array([0.2, 0.8])[None, None, :]  # means -48 dB and -8 dB in both bands
    p[:, :, 2] = np.log(0.01)
    frames = plan_sampling.draw_frame(p.reshape(4000, -1), config, 1.0, np.random.default_rng(0))
    assert np.all(np.abs(frames[:, 0] - frames[:, 1]) < 10)  # never one band low and the other high
    assert 0.3 < (frames[:, 0] > -30).mean() < 0.7  # both components drawn
