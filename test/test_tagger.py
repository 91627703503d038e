"""The genre tagger (local/tagger.py) trained by the real stage 3 on a real demo dataset (conftest.demo_tagger)."""
import csv
import json
import os

import numpy as np
import pytest

from conftest import TAGGER_ARGS
from helpers import run_script
from local import tagger


def test_tagger_separates_the_demo_genres_on_held_out_tracks(demo_tagger):
    run_dir = demo_tagger["run_dir"]
    evaluation = json.load(open(os.path.join(run_dir, "evaluation.json")))
    assert evaluation["n_test_tracks"] == 3 and evaluation["n_valid_tracks"] == 3
    assert evaluation["majority_baseline"] == pytest.approx(1 / 3)
    assert evaluation["test_accuracy"] >= 2 / 3, evaluation["test_tracks"]
    assert evaluation["test_accuracy"] + evaluation["valid_accuracy"] >= 5 / 3, evaluation
    assert set(evaluation["per_genre"]) == {"Ambient", "Electronic", "Folk"}
    assert "majority baseline 0.33" in demo_tagger["train_stdout"]


def test_a_tagger_run_directory_has_the_stage_3_files(demo_tagger):
    run_dir = demo_tagger["run_dir"]
    for name in ("config.json", "model.json", "model.keras", "metrics.csv", "loss.png", "evaluation.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "tensorboard"))
    info = json.load(open(os.path.join(run_dir, "model.json")))
    assert info["kind"] == "tagger" and info["genres"] == ["Ambient", "Electronic", "Folk"]
    assert info["sample_rate"] == 16000 and info["input_samples"] == 6561
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [40, 80, 120]
    assert "train_bits_per_sample" not in rows[0]  # a tagger's rows have no WaveNet columns
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["valid_window_accuracy"]) > 0.5
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["step-00000060", "step-00000120"]


def test_a_finished_tagger_run_resumes_to_more_steps_from_its_checkpoint(demo_tagger, tmp_path):
    import shutil
    run_dir = str(tmp_path / "resumed")
    shutil.copytree(demo_tagger["run_dir"], run_dir)
    args = [a for a in TAGGER_ARGS if not a.startswith("--tagger_steps")]
    result = run_script("run_model_training.py", "--model=tagger", f"--data_dir={demo_tagger['data_dir']}",
                        f"--run_dir={run_dir}", "--tagger_steps=140", *args)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "step 120" in result.stdout
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [40, 80, 120, 140]


def test_a_tagger_config_that_cannot_work_is_one_line(demo_tagger, tmp_path):
    result = run_script("run_model_training.py", "--model=tagger", f"--data_dir={demo_tagger['data_dir']}",
                        f"--run_dir={tmp_path / 'run'}", "--tagger_input_samples=100")
    assert result.returncode == 2
    assert "--tagger_input_samples=100" in result.stderr and "Traceback" not in result.stderr
    result = run_script("run_model_training.py", "--model=wavenet", f"--data_dir={demo_tagger['data_dir']}",
                        f"--run_dir={demo_tagger['run_dir']}", "--steps=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr


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
    assert config.problem() == ""
    model = tagger.build_tagger(config)
    assert model.get_layer("block4_pool").output.shape[1] == 1
    embeddings, logits = tagger.readout_model(model).predict_on_batch(np.zeros((2, 243), np.float32))
    assert embeddings.shape == (2, 6) and logits.shape == (2, 3)
    assert "3^6" in tagger.TaggerConfig(input_samples=243, channels=(4,) * 6).problem()
