"""One-line errors where a traceback or a silent wrong result used to be (issue 12): folders that are files or
cannot be written, unreadable --config files, resuming or scoring on another dataset, stage 4 asked for nan or
more than memory holds, a dataset with no valid split."""
import os

import numpy as np
import pytest
from helpers import run_script

from local.core import checks
from local.core.fileio import write_json_atomic
from local.store import dataset_files

TINY = ["--dilations=1,2", "--residual_channels=4", "--dilation_channels=4", "--skip_channels=8",
        "--batch_size=2", "--window=32", "--valid_windows=2", "--cache_tracks=2"]


def tone_dataset(directory, genres=("Low", "High"), sample_rate=1000, splits=("train", "train", "valid", "test")):
    """A real processed dataset (Parquet parts + dataset.json) of tones; genre i = genres[i % len(genres)]."""
    writer = dataset_files.PartWriter(str(directory), rows_per_part=2)
    t = np.arange(2 * sample_rate) / sample_rate
    for i, split in enumerate(splits):
        genre_id = i % len(genres)
        x = 0.5 * np.sin(2 * np.pi * (50.0 + 60 * genre_id + 7 * i) * t)
        codes = np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)
        writer.write({"track_id": f"t{i}", "genre": genres[genre_id], "genre_id": genre_id, "split": split,
                      "sample_rate": sample_rate, "n_samples": len(codes), "codes": codes.tobytes(),
                      "source_path": f"t{i}.wav", "source_sha256": f"t{i}"})
    writer.close()
    index = dataset_files.read_index(str(directory))
    write_json_atomic(os.path.join(directory, "dataset.json"),
                      dataset_files.summarize(index, sample_rate, 256, list(genres)))
    return str(directory)


def one_line_error(result, *words):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_file_or_an_unwritable_place_as_output_folder_is_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_error(run_script("run_webscraper.py", f"--out_dir={a_file}", "--demo_tracks_per_genre=1",
                              "--demo_seconds=0.5"), "out_dir=", "is a file, not a folder")
    one_line_error(run_script("run_webscraper.py", "--out_dir=/proc/waveforms-test", "--demo_tracks_per_genre=1",
                              "--demo_seconds=0.5"), "out_dir=", "cannot be written")
    raw = tmp_path / "raw"
    os.makedirs(raw / "Rock")
    from helpers import make_audio
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=0.5)
    one_line_error(run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={a_file}"),
                   "out_dir=", "is a file")
    assert checks.output_folder_problem(str(tmp_path / "new" / "deep"), "out_dir") == ""
    assert os.path.isdir(tmp_path / "new" / "deep") and os.listdir(tmp_path / "new" / "deep") == []


def test_a_file_given_as_raw_dir_is_said_to_be_a_file(tmp_path):
    line = one_line_error(run_script("run_transformation_scripts.py", "--raw_dir=/etc/passwd",
                                     f"--out_dir={tmp_path / 'o'}"), "raw_dir=")
    assert "is a file, not a folder" in line and "does not exist" not in line


def test_a_config_that_is_a_folder_is_one_line(tmp_path):
    folder = tmp_path / "my.toml"
    folder.mkdir()
    one_line_error(run_script("run_webscraper.py", "--config", str(folder), f"--out_dir={tmp_path / 'o'}"),
                   "--config", "folder")


def test_resume_dataset_and_evaluation_rate_checks():
    saved = {"sample_rate": 16000, "quantization_channels": 256, "genres": ["Jazz", "Rock"], "data_dir": "d1"}
    assert checks.resume_dataset_problem(saved, ["Jazz", "Rock", "Folk"], 16000, 256, "d2", "run") == ""
    assert "genres Jazz, Rock" in checks.resume_dataset_problem(saved, ["Folk", "Rock"], 16000, 256, "d2", "run")
    assert "sample_rate=16000" in checks.resume_dataset_problem(saved, ["Jazz", "Rock"], 8000, 256, "d2", "run")
    assert "--data_dir it was trained on (d1)" in checks.resume_dataset_problem(saved, ["Jazz"], 8000, 256, "d", "r")
    assert checks.evaluation_dataset_problem(16000, {"sample_rate": 16000}, "d", "r") == ""
    assert "8000 Hz" in checks.evaluation_dataset_problem(16000, {"sample_rate": 8000}, "d", "r")


def test_generation_asked_for_nan_or_more_than_memory_is_refused():
    assert checks.generation_problem(4.0, 1.0, 1.0, 3, 16000, 1024, 32, available=8e9) == ""
    assert "temperature" in checks.generation_problem(4.0, float("nan"), 1.0, 3, 16000, 1024, 32, available=8e9)
    assert "seconds=nan" in checks.generation_problem(float("nan"), 1.0, 1.0, 3, 16000, 1024, 32, available=8e9)
    line = checks.generation_problem(1e9, 1.0, 1.0, 100000, 16000, 1024, 32, available=8e9)
    assert "streams=100000" in line and "lower --streams or --seconds" in line
    assert checks.generation_memory_bytes(2, 1.0, 1000, 10, 4) == 2 * (1000 * 10 + 10 * 4 * 4)
    assert "2 x 1 s = 2,000 samples" in checks.generation_cost_line(2, 1.0, 1000, 10, 4)


def test_no_valid_split_is_told_as_such():
    assert "no valid split" in checks.split_problem(1, 1, 0, "d")
    assert checks.split_problem(5, 4, 1, "d") == ""


@pytest.mark.slow
def test_stage3_and_stage4_refuse_another_dataset_and_impossible_requests(tmp_path):
    data = tone_dataset(tmp_path / "data", ("Low", "High"))
    other_genres = tone_dataset(tmp_path / "other_genres", ("High", "Low"))
    other_rate = tone_dataset(tmp_path / "other_rate", ("Low", "High"), sample_rate=2000)
    one_track = tone_dataset(tmp_path / "one_track", ("Low",), splits=("train",))
    run = str(tmp_path / "run")
    trained = run_script("run_model_training.py", f"--data_dir={data}", f"--run_dir={run}", "--steps=2",
                         "--eval_every=2", "--checkpoint_every=2", *TINY)
    assert trained.returncode == 0, trained.stderr
    model_json = open(os.path.join(run, "model.json")).read()
    for other, words in ((other_genres, ("genres Low, High", "--data_dir it was trained on")),
                         (other_rate, ("sample_rate=1000", "2000 Hz"))):
        result = run_script("run_model_training.py", f"--data_dir={other}", f"--run_dir={run}", "--steps=4", *TINY)
        one_line_error(result, *words)
        assert open(os.path.join(run, "model.json")).read() == model_json  # not rewritten
    one_line_error(run_script("run_model_training.py", f"--data_dir={one_track}", f"--run_dir={tmp_path / 'r1'}",
                              *TINY), "no valid split")
    out = str(tmp_path / "gen")
    one_line_error(run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={out}", "--seconds=0",
                              "--evaluate=true", f"--data_dir={other_rate}"), "2000 Hz", "trained at 1000 Hz")
    one_line_error(run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={out}", "--seconds=nan"),
                   "seconds=nan")
    one_line_error(run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={out}",
                              "--temperature=nan"), "temperature")
    one_line_error(run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={out}",
                              "--streams=100000", "--seconds=1e9"), "streams=100000", "GB")
    assert not [n for n in os.listdir(out) if n.endswith((".wav", ".png"))]
    # a killed call leaves neither its config.json nor its temps behind for the next call to trust
    import json
    import signal
    import subprocess
    import time

    from helpers import PYTHON, ROOT
    stale = os.path.join(out, ".tmp-999999-Low_00.png")  # what a kill mid-savefig leaves (pid 999999: dead)
    open(stale, "wb").close()
    done = run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={out}", "--seconds=0.05",
                      "--seed=1")
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(stale) and json.load(open(os.path.join(out, "config.json")))["seed"] == 1
    killed = subprocess.Popen([PYTHON, os.path.join(ROOT, "run_model_predictions.py"), f"--run_dir={run}",
                               f"--out_dir={out}", "--seconds=600", "--seed=2"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed.stdout.readline().startswith("generating"):
        pass
    time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert json.load(open(os.path.join(out, "config.json")))["seed"] == 1


@pytest.mark.slow
def test_damaged_files_are_one_line_and_training_falls_back_to_the_previous_checkpoint(tmp_path):
    import shutil
    data = tone_dataset(tmp_path / "data", ("Low", "High"))
    run = str(tmp_path / "run")
    args = [f"--data_dir={data}", f"--run_dir={run}", "--eval_every=2", "--checkpoint_every=2", *TINY]
    trained = run_script("run_model_training.py", *args, "--steps=4")
    assert trained.returncode == 0, trained.stderr
    # stage 4: a cut model.keras, a cut model.json
    keras_path, json_path = os.path.join(run, "model.keras"), os.path.join(run, "model.json")
    shutil.copy(keras_path, tmp_path / "model.keras.good")
    with open(keras_path, "r+b") as f:
        f.truncate(os.path.getsize(keras_path) // 2)
    one_line_error(run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={tmp_path / 'g'}"),
                   "model.keras is damaged")
    shutil.copy(tmp_path / "model.keras.good", keras_path)
    good_json = open(json_path).read()
    with open(json_path, "w") as f:
        f.write(good_json[:40])
    one_line_error(run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={tmp_path / 'g'}"),
                   "model.json is damaged")
    # stage 3: the newest checkpoint is damaged -> the previous one; the damaged model.json is rewritten
    newest = os.path.join(run, "checkpoints", "step-00000004", "model.weights.h5")
    with open(newest, "r+b") as f:
        f.truncate(100)
    resumed = run_script("run_model_training.py", *args, "--steps=6")
    assert resumed.returncode == 0, resumed.stderr
    assert "step-00000004 cannot be loaded" in resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout and "from step 2 " in resumed.stdout
    assert open(json_path).read() == good_json
    # a damaged dataset.json and a truncated part: stage 3 names them in one line
    shutil.copy(os.path.join(data, "dataset.json"), tmp_path / "dataset.json.good")
    with open(os.path.join(data, "dataset.json"), "w") as f:
        f.write("{\"sample_rate\": ")
    one_line_error(run_script("run_model_training.py", *args, "--steps=8"), "dataset.json is damaged")
    shutil.copy(tmp_path / "dataset.json.good", os.path.join(data, "dataset.json"))
    part = dataset_files.list_parts(data)[0]
    with open(part, "r+b") as f:
        f.truncate(os.path.getsize(part) - 20)
    one_line_error(run_script("run_model_training.py", *args, "--steps=8"), os.path.basename(part), "damaged",
                   "run_transformation_scripts.py")


def test_stage2_names_a_truncated_part_and_rewrites_a_damaged_dataset_json(tmp_path):
    from helpers import make_audio
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.5)
    make_audio(str(raw / "Rock" / "b.mp3"), seconds=1.5, freq_hz=300)
    args = [f"--raw_dir={raw}", f"--out_dir={out}", "--workers=1", "--min_seconds=0.5", "--rows_per_part=1"]
    assert run_script("run_transformation_scripts.py", *args).returncode == 0
    good = open(out / "dataset.json").read()
    (out / "dataset.json").write_text("{")
    again = run_script("run_transformation_scripts.py", *args)
    assert again.returncode == 0 and "0 tracks processed, 2 already done" in again.stdout
    assert open(out / "dataset.json").read() == good
    part = dataset_files.list_parts(str(out))[0]
    with open(part, "r+b") as f:
        f.truncate(os.path.getsize(part) // 2)
    one_line_error(run_script("run_transformation_scripts.py", *args), os.path.basename(part), "delete it")
