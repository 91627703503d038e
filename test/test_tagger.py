"""The genre tagger (local/tagger.py) trained by the real stage 3 on a real demo dataset (conftest.demo_tagger)."""
import csv
import json
import os

import numpy as np
import pytest

from conftest import TAGGER_ARGS
from helpers import run_script
from local import rundir, tagger, training
from local.wavenet import read_run_model
from local.config import ConfigError


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
    config, read_back = tagger.read_tagger_run(run_dir)  # the one way back from model.json
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
            training.resolve_config(vars(run_model_training), base + args)
        assert key in str(refused.value) and "\n" not in str(refused.value)
    result = run_script("run_model_training.py", "--model=wavenet", f"--data_dir={demo_tagger['data_dir']}",
                        f"--run_dir={demo_tagger['run_dir']}", "--steps=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds a tagger run, not a wavenet" in result.stderr


def test_windows_tile_a_track_and_pad_a_short_one():
    assert tagger.window_starts(100, 30, 16).tolist() == [0, 35, 70]
    assert tagger.window_starts(100, 30, 2).tolist() == [0, 70]
    windows = tagger.track_windows(np.arange(10, dtype=np.uint8), 27, 4)
    assert windows.shape == (1, 27) and windows[0, :10].tolist() == list(range(10))
    assert (windows[0, 10:] == 128).all()
    table = tagger.mu_law_table(256)
    assert table[128] == 0 and table[0] == pytest.approx(-1) and table[255] > 0.95 and (np.diff(table) > 0).all()


def test_the_tagger_shrinks_3_to_the_n_samples_to_one_frame():
    config = tagger.TaggerConfig(input_samples=3 ** 5, channels=(4, 4, 8, 8, 8), embedding_size=6, n_genres=3)
    assert tagger.TaggerConfig.from_json(config.to_json()) == config
    model = tagger.build_tagger(config)
    assert model.get_layer("block4_pool").output.shape[1] == 1
    embeddings, logits = tagger.readout_model(model).predict_on_batch(np.zeros((2, 243), np.float32))
    assert embeddings.shape == (2, 6) and logits.shape == (2, 3)
    with pytest.raises(ConfigError, match=r"3\^6"):
        tagger.TaggerConfig(input_samples=243, channels=(4,) * 6)
