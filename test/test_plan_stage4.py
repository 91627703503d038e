"""Stage 4 with a renderer: --plan=heldout|track:|file:|none, every clip's .plan.npy, generation.json's plan sources
and plan fidelity, and the one-line refusals."""
import json
import os
import shutil

import numpy as np
import pytest
from helpers import make_audio, run_script
from test_predictions import GENRES, SAMPLE_RATE, save_dataset, save_run

from local.audio.plan import plan_frames
from local.generate import clip_files
from local.model.wavenet import read_run_model
from local.report.demo_summary import summary_lines
from local.store import dataset_files, rundir

PLAN = {"plan_bands": 8, "plan_hop": 64, "plan_n_fft": 256, "plan_channels": 6, "plan_width": 1}


def save_renderer(run_dir, data_dir, seed=0):
    """A genre-conditioned tiny renderer with random weights (its plan projections too) as a stage-3 run."""
    save_run(run_dir, data_dir, seed=seed, extra=PLAN)
    return read_run_model(run_dir)[0]


@pytest.fixture(scope="module")
def renderer_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    data_dir, run_dir = str(root / "processed"), str(root / "run")
    rows = save_dataset(data_dir)
    wavenet = save_renderer(run_dir, data_dir)
    save_run(str(root / "plain"), data_dir)
    return {"root": root, "data_dir": data_dir, "run_dir": run_dir, "rows": rows, "wavenet": wavenet}


def stage4(project, out, *args):
    return run_script("run_model_predictions.py", f"--run_dir={project['run_dir']}", f"--out_dir={out}",
                      "--seconds=0.05", "--threads=1", *args)


def one_line_error(result):
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, \
        result.stderr
    return result.stderr


def test_heldout_plans_are_rendered_saved_and_reported(renderer_project, tmp_path):
    out = tmp_path / "resynth"
    result = stage4(renderer_project, out, "--streams=4")
    assert result.returncode == 0, result.stderr
    generation = json.loads((out / "generation.json").read_text())
    assert generation["generation"] == "resynthesis" and generation["plan"] == "heldout"
    settings = renderer_project["wavenet"].plan_settings(SAMPLE_RATE)
    index = {str(r["track_id"]): r for r in dataset_files.read_index(renderer_project["data_dir"])}
    for clip in generation["clips"]:
        assert clip["plan_source"].startswith("heldout test track ")
        track_id = clip["plan_source"].split()[3]
        assert index[track_id]["genre"] == clip["genre"] and index[track_id]["split"] == "test"
        plan = np.load(clip["plan"])
        assert plan.shape == (settings.frames_covering(0.05 * SAMPLE_RATE), 8) and plan.dtype == np.float32
        real = plan_frames(dataset_files.read_track_codes(index[track_id]), settings)
        first = int(round(float(clip["plan_source"].split()[-2]) * settings.frames_per_second))
        assert np.array_equal(plan, real[first:first + len(plan)])  # the track's own frames from there
        assert os.path.isfile(clip["png"]) and clip["plan_distance_db"] >= 0
    fidelity = generation["plan_fidelity"]
    assert fidelity["plan_distance_db"] > 0 and set(fidelity["per_genre"]) == set(GENRES)
    assert "plan fidelity: clips" in result.stdout
    demo = tmp_path / "demo" / "resynthesized"  # make demo's summary reads the same file
    demo.mkdir(parents=True)
    shutil.copy(out / "generation.json", demo)
    lines = summary_lines(str(tmp_path / "demo"))
    assert len(lines) == 2 and "resynthesis" in lines[1] and f"{fidelity['plan_distance_db']:.1f} dB" in lines[1]


def test_track_and_file_plans(renderer_project, tmp_path):
    track = stage4(renderer_project, tmp_path / "t", "--plan=track:chirp-1", "--offset=0.01")
    assert track.returncode == 0, track.stderr
    clips = json.loads((tmp_path / "t" / "generation.json").read_text())["clips"]
    assert {c["genre"] for c in clips} == {"Chirp"} and clips[0]["plan_source"].startswith("track:chirp-1 from 0.")
    song = make_audio(str(tmp_path / "song.flac"), seconds=0.5, sample_rate=22050, freq_hz=330.0)
    played = stage4(renderer_project, tmp_path / "f", f"--plan=file:{song}", "--streams=2")
    assert played.returncode == 0, played.stderr
    clip = json.loads((tmp_path / "f" / "generation.json").read_text())["clips"][0]
    assert clip["plan_source"] == f"file:{song} from 0 s"
    again = stage4(renderer_project, tmp_path / "n", f"--plan=file:{clip['plan']}", "--streams=1")
    assert again.returncode == 0, again.stderr
    replayed = json.loads((tmp_path / "n" / "generation.json").read_text())["clips"][0]
    assert np.array_equal(np.load(replayed["plan"]), np.load(clip["plan"]))  # a saved plan plays again


def test_plan_refusals_are_one_line(renderer_project, tmp_path):
    assert "no such track" in one_line_error(stage4(renderer_project, tmp_path / "a", "--plan=track:nope"))
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(os.urandom(4000))
    assert str(garbage) in one_line_error(stage4(renderer_project, tmp_path / "b", f"--plan=file:{garbage}"))
    assert "no such file" in one_line_error(stage4(renderer_project, tmp_path / "c", "--plan=file:/no/such.wav"))
    wrong = tmp_path / "wrong.plan.npy"
    np.save(wrong, np.zeros((10, 5), np.float32))  # a plan of other keys: 5 bands, the model's are 8
    assert "(frames, 8)" in one_line_error(stage4(renderer_project, tmp_path / "d", f"--plan=file:{wrong}"))
    assert "renders a plan" in one_line_error(stage4(renderer_project, tmp_path / "e", "--plan=none"))
    assert "expected heldout" in one_line_error(stage4(renderer_project, tmp_path / "g", "--plan=bogus"))
    assert "--offset=9" in one_line_error(stage4(renderer_project, tmp_path / "h", "--plan=track:chirp-1",
                                                  "--offset=9"))
    plain = dict(renderer_project, run_dir=str(renderer_project["root"] / "plain"))
    assert "has no plan" in one_line_error(stage4(plain, tmp_path / "i", "--plan=track:chirp-1"))


def test_a_plan_file_is_written_whole_or_not_at_all(tmp_path):
    class Unreadable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("the plan went away")

    path = tmp_path / "x.plan.npy"
    with pytest.raises(RuntimeError):
        clip_files.write_plan(str(path), Unreadable())
    assert os.listdir(tmp_path) == []
    clip_files.write_plan(str(path), np.ones((3, 4)))
    assert np.load(path).dtype == np.float32 and os.listdir(tmp_path) == ["x.plan.npy"]


def save_prior(run_dir, data_dir, bands=8, seed=0):
    """A tiny random prior over the renderer's plan (or, with other ``bands``, another plan) as a stage-3 run."""
    from local.model import prior as model_prior
    config = model_prior.PriorConfig(plan_bands=bands, plan_hop=PLAN["plan_hop"], plan_n_fft=PLAN["plan_n_fft"],
                                     channels=8, layers=3, mixtures=2, genre_channels=4, n_genres=len(GENRES),
                                     dropout=0.0)
    model = model_prior.build_prior(config)
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.3 * rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    os.makedirs(run_dir, exist_ok=True)
    rundir.save_model(model, run_dir)
    rundir.write_model_json(run_dir, model_prior.prior_model_json(config, genres=GENRES, sample_rate=SAMPLE_RATE,
                                                                  quantization_channels=256, data_dir=data_dir))


def test_prior_plans_are_drawn_primed_rendered_and_checked(renderer_project, tmp_path):
    prior_dir = str(tmp_path / "prior")
    save_prior(prior_dir, renderer_project["data_dir"])
    out = tmp_path / "free"
    result = stage4(renderer_project, out, f"--prior_dir={prior_dir}", "--streams=4", "--plan_temperature=0.5",
                    "--prime=track:chirp-2", "--prime_seconds=0.016")
    assert result.returncode == 0, result.stderr
    generation = json.loads((out / "generation.json").read_text())
    assert generation["generation"] == "free" and generation["plan"] == "prior"  # the default with a prior
    settings = renderer_project["wavenet"].plan_settings(SAMPLE_RATE)
    index = {str(r["track_id"]): r for r in dataset_files.read_index(renderer_project["data_dir"])}
    opening = plan_frames(dataset_files.read_track_codes(index["chirp-2"]), settings)[:2]
    plans = [np.load(c["plan"]) for c in generation["clips"]]
    for clip, plan in zip(generation["clips"], plans):
        assert clip["plan_source"].startswith(f"prior {prior_dir} at temperature 0.5")
        assert "primed by track:chirp-2" in clip["plan_source"]
        assert np.array_equal(plan[:2], opening)  # the prime's frames, then the prior's
    assert not np.array_equal(plans[0], plans[1])  # each clip its own plan
    real = {r["genre"]: r for r in generation["real_plans"]}  # a real excerpt of each genre, drawn the same way
    assert set(real) == set(GENRES) and all(os.path.isfile(r["png"]) and os.path.isfile(r["plan"]) for r in real.values())
    page = (renderer_project["root"] / "run" / "report.html").read_text()
    assert f"real Chirp: {real['Chirp']['source']}" in page and "Chirp_01" in page
    memory = generation["plan_memorization"]
    assert memory["n_train_excerpts"] > 0 and memory["plan_memorization_ratio"] > 0
    trained = stage4(renderer_project, tmp_path / "primed", f"--prior_dir={prior_dir}", "--streams=2", "--prime=train",
                     "--prime_seconds=0.016")
    assert trained.returncode == 0, trained.stderr
    for clip in json.loads((tmp_path / "primed" / "generation.json").read_text())["clips"]:
        first = f"{clip['genre'].lower()}-0"  # the genre's first train track opens its first clip
        assert np.array_equal(np.load(clip["plan"])[:2],
                              plan_frames(dataset_files.read_track_codes(index[first]), settings)[:2])
    other = str(tmp_path / "other")
    save_prior(other, renderer_project["data_dir"], bands=5)
    refused = one_line_error(stage4(renderer_project, tmp_path / "x", "--plan=prior", f"--prior_dir={other}"))
    assert "plan_bands 5/8" in refused
    assert "no prior" in one_line_error(stage4(renderer_project, tmp_path / "y", "--plan=prior"))
    assert "--prime=" in one_line_error(stage4(renderer_project, tmp_path / "z", "--plan=heldout", "--prime=track:x"))
