"""Hostile inputs, round 3 continued (issue 31; docs/hostile-inputs.md): each test fails on the code before it.

(Stage 1's lock and the long Retry-After are tested against a real server in test_scraping.py.)
"""
import json
import os
import shutil

import pytest

from helpers import run_script


# --------------------------------------------------------------------------- model.json vs model.keras

@pytest.fixture(scope="module")
def stage4(tmp_path_factory):
    """A tiny saved WaveNet run (test_predictions' helpers, dilations 1, 2, 4, 8) and its dataset."""
    from test_predictions import save_dataset, save_run
    root = tmp_path_factory.mktemp("stage4")
    save_dataset(str(root / "processed"))
    model = save_run(str(root / "run"), str(root / "processed"))
    return root, model


def test_stage4_stops_when_model_json_disagrees_with_model_keras(stage4, tmp_path):
    root, _ = stage4
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    with open(run / "model.json", encoding="utf-8") as f:
        info = json.load(f)
    assert info["model"]["dilations"] == [1, 2, 4, 8]
    info["model"]["dilations"] = [1, 2]  # the old code generated from the first 2 of the 4 layers, exit 0
    (run / "model.json").write_text(json.dumps(info))
    result = run_script("run_model_predictions.py", f"--run_dir={run}", f"--out_dir={tmp_path / 'gen'}",
                        "--seconds=0.05", "--threads=1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, \
        result.stderr
    assert f"{run / 'model.keras'} and {run / 'model.json'} disagree" in result.stderr
    assert "dilations [1, 2, 4, 8] in the model, [1, 2] in model.json" in result.stderr
    assert not [n for n in os.listdir(tmp_path / "gen") if n.endswith(".wav")]


def test_the_fast_generator_refuses_weights_of_another_structure(stage4):
    from local.generate import weights as generation
    from local.model.structure import structure_mismatch
    from local.model.wavenet import WaveNetConfig
    _, model = stage4
    with open(stage4[0] / "run" / "model.json", encoding="utf-8") as f:
        described = WaveNetConfig.from_json(json.load(f)["model"])
    assert structure_mismatch(model, described) == ""
    assert generation.fold_weights(model, described)["dilations"].tolist() == [1, 2, 4, 8]
    for change, phrase in ((dict(dilations=(1, 2, 4, 4)), "dilations [1, 2, 4, 8] in the model, [1, 2, 4, 4]"),
                           (dict(skip_channels=8), "skip_channels 16 in the model, 8 in model.json"),
                           (dict(genre_conditioning=False), "genre_conditioning True in the model, False")):
        other = WaveNetConfig(**{**described.to_json(), **change})
        assert phrase in structure_mismatch(model, other)
        with pytest.raises(ValueError, match="disagree"):
            generation.fold_weights(model, other)


# --------------------------------------------------------------------------- config files

def stage1_defaults():
    import run_webscraper
    from local.core.config import config_keys
    return config_keys(vars(run_webscraper))


def test_an_upper_case_toml_suffix_is_read_as_toml(tmp_path):
    from local.core.config import resolve_config
    path = tmp_path / "x.TOML"
    path.write_text('genres = ["Folk"]\nconcurrency = 3\n')  # the old code parsed it as JSON: refused
    got = resolve_config(stage1_defaults(), [f"--config={path}"])
    assert got["genres"] == ["Folk"] and got["concurrency"] == 3


@pytest.mark.parametrize("args", [["--config="], ["--config", ""]])
def test_an_empty_config_is_an_error_not_ignored(args):
    from local.core.config import ConfigError, resolve_config
    with pytest.raises(ConfigError, match="--config needs a file"):
        resolve_config(stage1_defaults(), args)


@pytest.mark.parametrize("content,key,expected", [
    ('concurrency = "lots"\n', "concurrency", "concurrency = 'lots': expected an integer"),
    ("link = 3\n", "link", "link = 3: expected bool like the default True"),
    ("timeout_s = nan\n", "timeout_s", "timeout_s = nan: expected a finite number"),
    ('genres = ["Rock"]\nmax_file_mb = [1, 2]\n', "max_file_mb", "max_file_mb = [1, 2]: expected float"),
])
def test_a_wrong_type_in_a_config_file_names_the_file_and_that_key_only(tmp_path, content, key, expected):
    path = tmp_path / "my.toml"
    path.write_text(content)
    result = run_script("run_webscraper.py", f"--config={path}", f"--out_dir={tmp_path / 'raw'}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"error: --config {path}: {expected}"), line
    others = [k for k in stage1_defaults() if k != key and k in line.replace(str(path), "")]
    assert not others and "valid keys" not in line, others  # the old code listed all ~25 keys after it
    assert not (tmp_path / "raw").exists()


# --------------------------------------------------------------------------- splits of the usable tracks

def raw_with_broken_valid_and_test(raw):
    """Five Rock tracks of which the ones stage 2 plans as valid and test do not decode; returns their ids."""
    from helpers import make_audio
    from local.dataset import build, inputs, settings
    for i in range(5):
        make_audio(str(raw / "Rock" / f"rock{i}.mp3"), seconds=1.0, freq_hz=200 + 40 * i)
    plan = build.plan_tracks(inputs.list_inputs(str(raw)), [], [], settings.SplitSettings(), lambda item: "")
    broken = [item for item in plan["todo"] if item["split"] != "train"]
    assert {item["split"] for item in broken} == {"valid", "test"} and len(plan["todo"]) - len(broken) == 3
    for item in broken:
        with open(item["path"], "wb") as f:
            f.write(b"<html>not audio</html>" * 50)
    return sorted(item["track_id"] for item in broken)


def check_split_of_usable(out_dir, broken):
    from local.store import dataset_files as dataset_store
    index = dataset_store.read_index(out_dir)
    assert len(index) == 3 and not {r["track_id"] for r in index} & set(broken)
    assert sorted(r["split"] for r in index) == ["test", "train", "valid"]  # the old code: train, train, train
    info = dataset_store.read_dataset_json(out_dir)
    assert info["per_genre"]["Rock"]["tracks"] == {"train": 1, "valid": 1, "test": 1}
    return {r["track_id"]: r["split"] for r in index}


def test_splits_are_made_from_the_tracks_that_decoded(tmp_path):
    from helpers import make_audio
    from local.dataset import build as preprocessing
    raw, out = tmp_path / "raw", str(tmp_path / "out")
    broken = raw_with_broken_valid_and_test(raw)
    summary = preprocessing.preprocess(str(raw), out, workers=1, progress=False, min_seconds=0.5)
    assert summary["processed"] == 3 and len(summary["failed"]) == 2
    first = check_split_of_usable(out, broken)
    # tracks already in the dataset keep theirs when more come
    for i in range(5, 8):
        make_audio(str(raw / "Rock" / f"rock{i}.mp3"), seconds=1.0, freq_hz=200 + 40 * i)
    preprocessing.preprocess(str(raw), out, workers=1, progress=False, min_seconds=0.5)
    from local.store import dataset_files as dataset_store
    again = {r["track_id"]: r["split"] for r in dataset_store.read_index(out)}
    assert len(again) == 6 and {k: again[k] for k in first} == first


def test_the_spark_job_splits_the_tracks_that_decoded_too(spark, tmp_path):
    from aws.spark_dataset import preprocess_spark
    raw, out = tmp_path / "raw", str(tmp_path / "out")
    broken = raw_with_broken_valid_and_test(raw)
    summary = preprocess_spark(spark, str(raw), out, partitions=2, min_seconds=0.5)
    assert summary["processed"] == 3
    check_split_of_usable(out, broken)


def test_a_run_killed_before_its_rows_are_split_again_is_split_by_the_rerun(tmp_path, monkeypatch):
    from local.dataset import build as preprocessing
    from local.store import dataset_files as dataset_store
    raw, out = tmp_path / "raw", str(tmp_path / "out")
    broken = raw_with_broken_valid_and_test(raw)

    def killed(*args):
        raise KeyboardInterrupt  # the kill lands after the last part, before the rows are split again
    with monkeypatch.context() as patch:
        patch.setattr(dataset_store, "set_splits", killed)
        with pytest.raises(KeyboardInterrupt):
            preprocessing.preprocess(str(raw), out, workers=1, progress=False, min_seconds=0.5)
    assert sorted(r["split"] for r in dataset_store.read_index(out)) == ["train"] * 3  # as planned
    assert os.path.exists(os.path.join(out, preprocessing.SPLITS_PENDING_NAME))
    again = preprocessing.preprocess(str(raw), out, workers=1, progress=False, min_seconds=0.5)
    assert again["processed"] == 0 and again["skipped"] == 3
    check_split_of_usable(out, broken)
    assert not os.path.exists(os.path.join(out, preprocessing.SPLITS_PENDING_NAME))


# --------------------------------------------------------------------------- a full disk

def one_disk_full_line(result, folder):
    """The stage stopped with exit 2 and one line naming ``folder`` (or a folder inside it) and its free space."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("W0000")
             and "\r" not in line and "it/s]" not in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr and "RuntimeError" not in result.stderr, \
        result.stderr[-3000:]
    assert lines[-1].startswith(f"error: no space left on the disk of {folder}"), lines[-1]
    assert " MB free): free some space or write elsewhere" in lines[-1]
    assert not [line for line in lines if "Exception ignored" in line], lines


def test_stage1_demo_on_a_full_disk_is_the_one_line_message(tmp_path):
    from helpers import PYTHON, ROOT, run_on_small_disk
    out = tmp_path / "small" / "raw"
    result = run_on_small_disk(tmp_path / "small", [PYTHON, os.path.join(ROOT, "run_webscraper.py"),
                                                    f"--out_dir={out}", "--demo_tracks_per_genre=2"])
    one_disk_full_line(result, out)  # the old code: RuntimeError: ffmpeg could not write ... No space left


@pytest.mark.slow
def test_stage4_on_a_full_disk_names_its_out_dir(stage4, tmp_path):
    from helpers import PYTHON, ROOT, run_on_small_disk
    root, _ = stage4
    out = tmp_path / "small" / "gen"
    result = run_on_small_disk(tmp_path / "small", [PYTHON, os.path.join(ROOT, "run_model_predictions.py"),
                                                    f"--run_dir={root / 'run'}", f"--out_dir={out}", "--seconds=2",
                                                    "--threads=1"])
    one_disk_full_line(result, out)  # the old code named the working directory's disk


@pytest.mark.slow
def test_stage3_on_a_full_disk_names_its_run_dir(tmp_path):
    from helpers import PYTHON, ROOT, run_on_small_disk
    from test_checks import TINY, tone_dataset
    data = tone_dataset(tmp_path / "data")
    run = tmp_path / "small" / "run"
    result = run_on_small_disk(tmp_path / "small", [PYTHON, os.path.join(ROOT, "run_model_training.py"),
                                                    f"--data_dir={data}", f"--run_dir={run}", "--steps=2",
                                                    "--eval_every=2", "--checkpoint_every=2", *TINY])
    one_disk_full_line(result, run)  # the old code named the working directory's disk
