"""The genre tagger (local/model/tagger.py) trained by the real stage 3 on a real demo dataset (conftest.demo_tagger)."""
import csv
import json
import os

import numpy as np
import pytest
from conftest import TAGGER_ARGS
from helpers import run_script

from local.core.config import ConfigError
from local.judge import tagger_features as judge_tagger_features
from local.model import tagger as model_tagger
from local.model.wavenet import read_run_model
from local.store import rundir
from local.train import kinds, runner, tagger_task


def test_tagger_separates_the_demo_genres_on_held_out_tracks(demo_tagger):
    run_dir = demo_tagger["run_dir"]
    evaluation = json.load(open(os.path.join(run_dir, "evaluation.json")))
    assert evaluation["n_test_tracks"] == 3 and evaluation["n_valid_tracks"] == 3
    assert evaluation["majority_baseline"] == pytest.approx(1 / 3)
    assert evaluation["test_accuracy"] >= 2 / 3, evaluation["test_tracks"]
    assert evaluation["test_accuracy"] + evaluation["valid_accuracy"] >= 5 / 3, evaluation
    assert set(evaluation["per_genre"]) == {"Ambient", "Electronic", "Folk"}
    assert "majority baseline 0.33" in demo_tagger["train_stdout"]
    summary = demo_tagger["summary"]  # train_one's summary: the one loop's, plus the evaluation
    assert summary["step"] == 120 and summary["stopped"] == "steps" and summary["evaluation"] == evaluation


def test_a_tagger_run_directory_has_the_stage_3_files(demo_tagger):
    run_dir = demo_tagger["run_dir"]
    for name in ("config.json", "model.json", "model.keras", "metrics.csv", "loss.png", "evaluation.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "tensorboard"))
    info = json.load(open(os.path.join(run_dir, "model.json")))
    assert info["kind"] == "tagger" and info["genres"] == ["Ambient", "Electronic", "Folk"]
    assert info["sample_rate"] == 16000 and info["input_samples"] == 6561
    assert info["decode"] == {"sample_rate": 16000, "quantization_channels": 256, "trim_silence": True,
                              "silence_threshold_db": 60.0, "min_seconds": 1.0}
    config, read_back = model_tagger.read_tagger_run(run_dir)  # the one way back from model.json
    assert config.input_samples == 6561 and config.n_genres == 3 and read_back == info
    with pytest.raises(ConfigError, match="is a tagger run, not a WaveNet"):
        read_run_model(run_dir)
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [40, 80, 120]
    assert "train_bits_per_sample" not in rows[0]  # a tagger's rows have no WaveNet columns
    assert {"train_bits_per_window", "valid_bits_per_window", "valid_window_accuracy", "samples_per_second",
            "learning_rate", "elapsed_seconds"} <= set(rows[0])
    assert float(rows[-1]["train_bits_per_window"]) < float(rows[0]["train_bits_per_window"])
    assert float(rows[-1]["valid_window_accuracy"]) > 0.5
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["step-00000060", "step-00000120"]


def test_a_finished_tagger_run_resumes_in_the_one_loop_which_also_keeps_its_time_budget(demo_tagger, tmp_path,
                                                                                        capsys):
    import shutil

    import run_model_training
    run_dir = str(tmp_path / "resumed")
    shutil.copytree(demo_tagger["run_dir"], run_dir)
    args = [a for a in TAGGER_ARGS if not a.startswith("--tagger_steps")]
    summary = run_model_training.main([f"--data_dir={demo_tagger['data_dir']}", f"--run_dir={run_dir}",
                                       "--tagger_steps=140", *args])
    assert "resuming" in capsys.readouterr().out and summary["step"] == 140
    assert [r["step"] for r in rundir.read_metrics(run_dir)] == [40, 80, 120, 140]
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [60, 120, 140]
    # --max_minutes stops a tagger as it stops a WaveNet: after one step here, with a metrics row and a checkpoint
    run_dir = str(tmp_path / "budget")
    summary = run_model_training.main([f"--data_dir={demo_tagger['data_dir']}", f"--run_dir={run_dir}",
                                       "--tagger_steps=1000", "--max_minutes=1e-9", *args])
    assert summary["step"] == 1 and summary["stopped"] == "max_minutes"
    assert [r["step"] for r in rundir.read_metrics(run_dir)] == [1]
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [1]
    assert os.path.isfile(os.path.join(run_dir, "evaluation.json"))


def test_a_tagger_config_that_cannot_work_is_one_line(demo_tagger, tmp_path):
    import run_model_training
    base = [f"--data_dir={demo_tagger['data_dir']}", f"--run_dir={tmp_path / 'run'}"]
    for args, key in ((["--model=tagger", "--tagger_input_samples=100"], "--tagger_input_samples=100"),
                      (["--model=tagger", "--tagger_dropout=1.0"], "--tagger_dropout=1.0"),
                      (["--model=tagger", "--tagger_batch_size=0"], "--tagger_batch_size=0"),
                      (["--model=tiger"], "model=")):
        with pytest.raises(ConfigError) as refused:
            kinds.resolve_config(vars(run_model_training), base + args)
        assert key in str(refused.value) and "\n" not in str(refused.value)
    result = run_script("run_model_training.py", "--model=wavenet", f"--data_dir={demo_tagger['data_dir']}",
                        f"--run_dir={demo_tagger['run_dir']}", "--steps=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds a tagger run, not a wavenet" in result.stderr


def test_windows_tile_a_track_and_pad_a_short_one():
    assert model_tagger.window_starts(100, 30, 16).tolist() == [0, 35, 70]
    assert model_tagger.window_starts(100, 30, 2).tolist() == [0, 70]
    windows = model_tagger.track_windows(np.arange(10, dtype=np.uint8), 27, 4)
    assert windows.shape == (1, 27) and windows[0, :10].tolist() == list(range(10))
    assert (windows[0, 10:] == 128).all()
    table = model_tagger.mu_law_table(256)
    assert table[128] == 0 and table[0] == pytest.approx(-1) and table[255] > 0.95 and (np.diff(table) > 0).all()


def test_the_tagger_shrinks_3_to_the_n_samples_to_one_frame():
    config = model_tagger.TaggerConfig(input_samples=3 ** 5, channels=(4, 4, 8, 8, 8), embedding_size=6, n_genres=3)
    assert model_tagger.TaggerConfig.from_json(config.to_json()) == config
    model = model_tagger.build_tagger(config)
    assert model.get_layer("block4_pool").output.shape[1] == 1
    embeddings, logits = model_tagger.readout_model(model).predict_on_batch(np.zeros((2, 243), np.float32))
    assert embeddings.shape == (2, 6) and logits.shape == (2, 3)
    with pytest.raises(ConfigError, match=r"3\^6"):
        model_tagger.TaggerConfig(input_samples=243, channels=(4,) * 6)


def test_evaluation_reports_balanced_accuracy_beside_the_majority_baseline_of_each_split(demo_tagger):
    evaluation = json.load(open(os.path.join(demo_tagger["run_dir"], "evaluation.json")))
    assert evaluation["test_balanced_accuracy"] == pytest.approx(
        np.mean([e["accuracy"] for e in evaluation["per_genre"].values()]))
    assert evaluation["majority_balanced_baseline"] == pytest.approx(1 / 3)
    assert evaluation["valid_majority_baseline"] == pytest.approx(1 / 3)
    assert evaluation["valid_balanced_accuracy"] == pytest.approx(
        np.mean([e["accuracy"] for e in evaluation["valid_per_genre"].values()]))
    assert evaluation["test_refused"] == "" and evaluation["valid_refused"] == ""
    assert evaluation["balanced_training"] is True and evaluation["features"] == "waveform"
    assert "every genre equally often" in demo_tagger["train_stdout"]


def test_a_test_split_of_one_genre_gets_no_figure_and_one_line_saying_what_to_do(demo_tagger, tmp_path, capsys):
    import keras

    from local.store import dataset_files
    model = keras.models.load_model(os.path.join(demo_tagger["run_dir"], "model.keras"))
    index = dataset_files.read_index(demo_tagger["data_dir"])
    for row in index:  # the case of the issue: the test split holds one genre only
        if row["split"] == "test" and row["genre"] != "Folk":
            row["split"] = "train"
    genres = ["Ambient", "Electronic", "Folk"]
    result = tagger_task.write_evaluation(str(tmp_path), model, index, genres, data_dir=demo_tagger["data_dir"],
                                     input_samples=6561, max_windows=4)
    assert result["test_accuracy"] is None and result["test_balanced_accuracy"] is None and result["per_genre"] == {}
    assert result["majority_baseline"] == 1.0  # the figure the issue saw reported as success
    assert "only Folk (1 tracks)" in result["test_refused"] and "run_transformation_scripts.py" in result["test_refused"]
    assert result["valid_refused"] == "" and result["valid_accuracy"] is not None
    assert json.load(open(tmp_path / "evaluation.json")) == result
    tagger_task.print_evaluation(result, str(tmp_path))
    lines = capsys.readouterr().out.splitlines()
    refusals = [line for line in lines if "no test figure" in line]
    assert len(refusals) == 1 and not any(line.strip().startswith("test ") and "1.00" in line for line in lines)


def band_features(waveforms, sample_rate, max_patches=16):
    """A stand-in for the pretrained network (same interface as judge_tagger_features.pretrained_features): per 3 s patch the
    log energy of 8 frequency bands and the zero-crossing rate."""
    out = []
    for y in waveforms:
        n = 3 * sample_rate
        y = np.tile(y, -(-n // len(y))) if len(y) < n else y
        patches = judge_tagger_features.spread(np.stack([y[s:s + n] for s in range(0, len(y) - n + 1, n)]), max_patches)
        power = np.abs(np.fft.rfft(patches, axis=1)) ** 2
        edges = np.geomspace(8, power.shape[1], 9).astype(int)
        bands = np.stack([power[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
        crossings = (np.diff(np.signbit(patches), axis=1) != 0).mean(axis=1, keepdims=True)
        out.append(np.concatenate([np.log10(bands + 1e-9) / 4, 10 * crossings], axis=1).astype(np.float32))
    return out


band_features.size = 9


@pytest.fixture
def stand_in_features(monkeypatch):
    """:func:`band_features` as the "mtt" features; ``.calls`` counts the waveforms it was given."""
    def counted(waveforms, *args, **kwargs):
        counted.calls += len(waveforms)
        return band_features(waveforms, *args, **kwargs)
    counted.size, counted.calls = band_features.size, 0
    monkeypatch.setitem(judge_tagger_features.FEATURE_FUNCTIONS, "mtt", lambda name: counted)
    return counted


def test_the_transfer_mode_trains_a_head_whose_run_directory_tags_finds_and_judges(demo_tagger, stand_in_features,
                                                                                  tmp_path, capsys):
    import run_model_predictions
    import run_model_training
    from local.judge import tagging
    from local.judge import verdict as judge_verdict
    run_dir, data_dir = str(tmp_path / "mtt"), demo_tagger["data_dir"]
    summary = run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", "--model=tagger",
                                       "--tagger_features=mtt", "--tagger_steps=150", "--eval_every=50",
                                       "--checkpoint_every=150", "--learning_rate=3e-3", "--tagger_dropout=0.1"])
    assert summary["step"] == 150 and "a head on mtt embeddings" in capsys.readouterr().out
    for name in ("config.json", "model.json", "model.keras", "metrics.csv", "loss.png", "evaluation.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    config, info = model_tagger.read_tagger_run(run_dir)
    assert config.features == "mtt" and config.feature_size == 9 and info["kind"] == "tagger"
    assert os.listdir(os.path.join(run_dir, "features"))  # the dataset's embeddings, computed once
    evaluation = summary["evaluation"]
    assert evaluation["features"] == "mtt" and evaluation["n_test_tracks"] == 3
    assert evaluation["test_balanced_accuracy"] is not None and evaluation["valid_balanced_accuracy"] is not None

    # --audio: the run directory tags files as a waveform tagger's does
    out = tmp_path / "tags"
    run_model_predictions.main([f"--run_dir={run_dir}", f"--audio={demo_tagger['raw']}", f"--out_dir={out}"])
    with open(out / "tags.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 and all(r["genre"] in ("Ambient", "Electronic", "Folk") for r in rows)
    assert sum(r["genre"] == os.path.basename(os.path.dirname(r["path"])) for r in rows) >= 9, rows
    # --similar_to: a track's own file finds itself first; the dataset's embeddings come from training's cache
    calls, track = stand_in_features.calls, demo_tagger["manifest"][0]
    run_model_predictions.main([f"--run_dir={run_dir}", f"--similar_to={track['track_id']}", "--top_k=3",
                                f"--out_dir={tmp_path / 'similar'}"])
    with open(tmp_path / "similar" / "similar.csv", newline="") as f:
        similar = list(csv.DictReader(f))
    assert similar and all(r["genre"] in ("Ambient", "Electronic", "Folk") for r in similar)
    assert stand_in_features.calls == calls  # no second pass of the pretrained network over the dataset
    # --judge: the run directory judges clips
    loaded = tagging.Tagger(run_dir)
    assert loaded.features is stand_in_features
    clips = [np.sin(2 * np.pi * f * np.arange(24000) / 16000).astype(np.float32) * 0.5 for f in (220, 440, 880)]
    per_clip, verdict = judge_verdict.Judge(loaded, data_dir).judge(clips, ["Ambient", "Electronic", "Folk"])
    assert verdict["n_clips"] == 3 and isinstance(verdict["frechet_distance"], float)
    assert all(c["top_genre"] in ("Ambient", "Electronic", "Folk") for c in per_clip)


def test_a_wavenet_judged_by_a_transfer_mode_tagger_gets_its_verdicts(demo_tagger, stand_in_features, tmp_path):
    from test_judge import save_wavenet

    import run_model_predictions
    import run_model_training
    run_dir, data_dir = str(tmp_path / "mtt"), demo_tagger["data_dir"]
    run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", "--model=tagger",
                             "--tagger_features=mtt", "--tagger_steps=20", "--eval_every=20"])
    wavenet_dir, out = str(tmp_path / "wavenet"), tmp_path / "generated"
    save_wavenet(wavenet_dir, data_dir, ["Ambient", "Electronic", "Folk"], 16000)
    run_model_predictions.main([f"--run_dir={wavenet_dir}", f"--out_dir={out}", "--seconds=1", f"--judge={run_dir}"])
    report = json.loads((out / "generation.json").read_text())
    assert report["judge_summary"]["n_clips"] == 3 and report["judge_summary"]["tagger_run"] == run_dir
    assert all(c["judge"]["top_genre"] in ("Ambient", "Electronic", "Folk") for c in report["clips"])


def test_a_transfer_config_that_cannot_work_is_one_line(demo_tagger, tmp_path):
    import run_model_training
    with pytest.raises(ConfigError) as refused:
        kinds.resolve_config(vars(run_model_training), [f"--data_dir={demo_tagger['data_dir']}",
                                                            "--model=tagger", "--tagger_features=vgg"])
    assert "--tagger_features=vgg" in str(refused.value) and "\n" not in str(refused.value)
    assert "tagger_balanced" in run_script("run_model_training.py", "--help").stdout


@pytest.mark.slow  # the real pretrained network: ~20 s to load, then ~0.2 s per 3 s patch on 2 cores
def test_the_transfer_mode_on_the_real_pretrained_network_tags_the_held_out_demo_tracks(demo_tagger, tmp_path):
    import run_model_predictions
    import run_model_training
    run_dir, data_dir = str(tmp_path / "mtt"), demo_tagger["data_dir"]
    summary = run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", "--model=tagger",
                                       "--tagger_features=mtt", "--tagger_steps=200", "--eval_every=100",
                                       "--checkpoint_every=200"])
    config, _ = model_tagger.read_tagger_run(run_dir)
    assert config.feature_size == 200  # musicnn's penultimate layer
    evaluation = summary["evaluation"]
    assert evaluation["test_balanced_accuracy"] >= 2 / 3 and evaluation["valid_balanced_accuracy"] >= 2 / 3, evaluation
    out = tmp_path / "tags"
    held_out = [r for r in demo_tagger["manifest"] if r["split"] in ("validation", "test")]
    run_model_predictions.main([f"--run_dir={run_dir}", f"--audio={demo_tagger['raw']}", f"--out_dir={out}"])
    with open(out / "tags.csv", newline="") as f:
        tags = {os.path.basename(r["path"]): r["genre"] for r in csv.DictReader(f)}
    hits = [tags[os.path.basename(r["path"])] == r["genre"] for r in held_out]
    assert sum(hits) >= 4, (tags, held_out)
