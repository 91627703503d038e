"""Stage 3: run-dir files, checkpoints (atomic, rotated, kill-safe), resume, and the script end to end."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import ROOT, run_script

from local.core.fileio import write_json_atomic
from local.model.wavenet import WaveNetConfig, build_wavenet, read_run_model
from local.store import dataset_files, rundir
from local.train import loop, runner, wavenet_task

TINY_ARGS = ["--dilations=1,2,4,8", "--residual_channels=8", "--dilation_channels=8", "--skip_channels=16",
             "--batch_size=4", "--window=64", "--valid_windows=4", "--cache_tracks=2"]


def write_tone_dataset(directory, splits=("train", "train", "train", "valid", "test"), seconds=3.0,
                       sample_rate=1000):
    """A real processed dataset (Parquet parts + dataset.json): one tone per track, genre = tone."""
    import librosa
    writer = dataset_files.PartWriter(str(directory), rows_per_part=2)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for i, split in enumerate(splits):
        genre_id = i % 2
        x = 0.5 * np.sin(2 * np.pi * (50.0 + 60 * genre_id + 7 * i) * t)
        codes = (librosa.mu_compress(x, mu=255, quantize=True) + 128).astype(np.uint8)
        writer.write({"track_id": f"t{i}", "genre": ["Low", "High"][genre_id], "genre_id": genre_id,
                      "split": split, "sample_rate": sample_rate, "n_samples": len(codes),
                      "codes": codes.tobytes(), "source_path": f"t{i}.wav", "source_sha256": f"t{i}"})
    writer.close()
    index = dataset_files.read_index(str(directory))
    write_json_atomic(os.path.join(directory, "dataset.json"),
                      dataset_files.summarize(index, sample_rate, 256, ["Low", "High"]))
    return str(directory)


# --- run-dir files -------------------------------------------------------------------------------------

def test_model_json_round_trip_and_missing_file(tmp_path):
    settings = {"dilations": [1, 2], "filter_width": 2, "residual_channels": 8, "dilation_channels": 8,
                "skip_channels": 16, "quantization_channels": 256, "genre_conditioning": True,
                "genre_channels": 4, "n_genres": 2}
    wavenet = WaveNetConfig.from_json(settings)
    rundir.write_model_json(str(tmp_path), wavenet_task.wavenet_model_json(wavenet, genres=["Low", "High"],
                                                                         sample_rate=16000, data_dir="data/x"))
    data = rundir.read_model_json(str(tmp_path))
    # the context keys as an older model.json lacks them (no context stack); seconds rounded to 0.1 ms
    no_context = {"context_rate": 0, "context_dilations": [1, 2, 4, 8, 16, 32], "context_channels": 32}
    no_plan = {"plan_bands": 0, "plan_hop": 256, "plan_n_fft": 1024, "plan_fmin": 30.0, "plan_fmax": 0.0,
               "plan_channels": 64, "plan_width": 2, "pre_emphasis": 0.0}  # as an older model.json lacks them
    assert data == {"kind": "wavenet", "model": {**settings, **no_context, **no_plan}, "genres": ["Low", "High"],
                    "sample_rate": 16000, "quantization_channels": 256, "receptive_field": 4,
                    "total_receptive_field": 4, "total_receptive_field_seconds": 0.0003, "context_past": 0,
                    "data_dir": "data/x"}
    assert read_run_model(str(tmp_path)) == (wavenet, data)
    older = {k: v for k, v in data.items() if k != "kind"}  # a run written before model.json had a kind
    rundir.write_model_json(str(tmp_path), older)
    assert rundir.run_kind(older) == "wavenet" and read_run_model(str(tmp_path)) == (wavenet, older)
    with pytest.raises(FileNotFoundError, match=r"nowhere.model\.json"):
        rundir.read_model_json(str(tmp_path / "nowhere"))
    assert rundir.model_differences(settings, {**settings, "dilations": [1]}) == ["dilations: [1, 2] -> [1]"]


def test_metrics_append_truncate_and_plot(tmp_path):
    run_dir = str(tmp_path)
    for step in (10, 20, 30):
        rundir.append_metrics(run_dir, {"step": step, "train_bits_per_sample": 8 - step / 10,
                                          "valid_bits_per_sample": 8.5 - step / 10, "samples_per_second": 100.0})
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        assert f.readline().strip().split(",")[:4] == ["step", "train_bits_per_sample", "valid_bits_per_sample",
                                                       "samples_per_second"]
    rows = rundir.read_metrics(run_dir)
    assert [r["step"] for r in rows] == [10, 20, 30] and rows[1]["valid_bits_per_sample"] == pytest.approx(6.5)
    assert math.isnan(rows[0]["learning_rate"])  # a column left empty reads as NaN
    rundir.truncate_metrics(run_dir, 20)
    assert [r["step"] for r in rundir.read_metrics(run_dir)] == [10, 20]
    path = rundir.plot_metrics(run_dir, baseline_bits=8.0)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_step_split_into_batch_parts_makes_the_whole_batch_update():
    import keras

    from local.model.wavenet import build_wavenet
    wavenet = WaveNetConfig([1, 2, 4], residual_channels=8, dilation_channels=8, skip_channels=16,
                            genre_conditioning=True, n_genres=3)
    rng = np.random.default_rng(0)
    features = {"codes": rng.integers(0, 256, (5, wavenet.receptive_field + 31)).astype(np.int32),
                "genre_id": np.array([0, 1, 2, 0, 1], np.int32)}
    targets = rng.integers(0, 256, (5, 32)).astype(np.int32)
    weights, losses = [], []
    for parts in (1, 2, 3):  # 5 rows in 3 parts: unequal sizes, weighted by size
        keras.utils.set_random_seed(7)
        model = build_wavenet(wavenet)
        step = wavenet_task.make_train_step(model, wavenet, keras.optimizers.SGD(0.1), 32, parts=parts)
        losses.append(float(step(features, targets)))
        weights.append(model.get_weights())
    for parts_weights, loss in zip(weights[1:], losses[1:]):
        assert loss == pytest.approx(losses[0], rel=1e-5)
        for split, whole in zip(parts_weights, weights[0]):
            np.testing.assert_allclose(split, whole, rtol=1e-4, atol=1e-6)
    keras.utils.set_random_seed(7)
    initial = build_wavenet(wavenet).get_weights()
    assert not all(np.allclose(a, b) for a, b in zip(initial, weights[0]))  # the step moved the weights


def test_learning_rate_schedule():
    assert loop.learning_rate_at(0, 1.0, schedule="constant", warmup_steps=4) == pytest.approx(0.25)
    assert loop.learning_rate_at(3, 1.0, schedule="constant", warmup_steps=4) == pytest.approx(1.0)
    assert loop.learning_rate_at(50, 1.0, schedule="constant") == 1.0
    assert loop.learning_rate_at(0, 1.0, schedule="cosine", total_steps=100, min_learning_rate=0.1) == pytest.approx(1.0)
    assert loop.learning_rate_at(50, 1.0, schedule="cosine", total_steps=100, min_learning_rate=0.1) == pytest.approx(0.55)
    assert loop.learning_rate_at(100, 1.0, schedule="cosine", total_steps=100, min_learning_rate=0.1) == pytest.approx(0.1)
    # a time budget half used is half the cosine, however few steps are done; the further of the two counts
    assert loop.learning_rate_at(10, 1.0, schedule="cosine", total_steps=100, min_learning_rate=0.1,
                                     time_fraction=0.5) == pytest.approx(0.55)
    assert loop.learning_rate_at(50, 1.0, schedule="cosine", total_steps=100, min_learning_rate=0.1,
                                     time_fraction=0.1) == pytest.approx(0.55)
    assert loop.learning_rate_at(1, 1.0, schedule="cosine", total_steps=100, min_learning_rate=0.1,
                                     time_fraction=1.2) == pytest.approx(0.1)
    assert loop.learning_rate_at(1, 1.0, schedule="constant", time_fraction=0.9) == 1.0


# --- checkpoints ---------------------------------------------------------------------------------------

def tiny_model_and_optimizer(seed=0):
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    wavenet = WaveNetConfig([1, 2], 2, residual_channels=4, dilation_channels=4, skip_channels=4,
                            quantization_channels=16)
    model = build_wavenet(wavenet)
    optimizer = loop.make_optimizer(1e-2)
    step = wavenet_task.make_train_step(model, wavenet, optimizer, window=4)
    features = {"codes": tf.constant(np.arange(32).reshape(4, 8) % 16, tf.int32),
                "genre_id": tf.zeros(4, tf.int32)}
    step(features, tf.constant(np.ones((4, 4)), tf.int32))
    return model, optimizer


def test_checkpoint_round_trip_and_rotation(tmp_path):
    run_dir = str(tmp_path)
    model, optimizer = tiny_model_and_optimizer()
    weights, moments = model.get_weights(), rundir.optimizer_arrays(optimizer)
    for step in (1, 2, 3):
        rundir.save_checkpoint(run_dir, step, model, optimizer, {"examples_done": 4 * step}, keep=2)
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [2, 3]
    fresh, fresh_optimizer = tiny_model_and_optimizer(seed=5)
    assert not np.allclose(fresh.get_weights()[0], weights[0])
    state = rundir.load_checkpoint(rundir.latest_checkpoint(run_dir)[1], fresh, fresh_optimizer)
    assert state == {"examples_done": 12, "step": 3}
    for a, b in zip(fresh.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(rundir.optimizer_arrays(fresh_optimizer), moments):
        np.testing.assert_array_equal(a, b)


def test_a_failed_checkpoint_write_leaves_the_previous_one_latest(tmp_path, monkeypatch):
    run_dir = str(tmp_path)
    model, optimizer = tiny_model_and_optimizer()
    rundir.save_checkpoint(run_dir, 1, model, optimizer, {"examples_done": 4})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rundir, "write_json_atomic", crash)  # dies after weights and optimizer are written
    with pytest.raises(OSError):
        rundir.save_checkpoint(run_dir, 2, model, optimizer, {"examples_done": 8})
    assert rundir.latest_checkpoint(run_dir)[0] == 1
    rundir.remove_stale_temps(run_dir)
    assert os.listdir(rundir.checkpoints_dir(run_dir)) == ["step-00000001"]


@pytest.mark.slow
def test_killed_while_checkpointing_never_leaves_a_broken_complete_checkpoint(tmp_path):
    """SIGKILL a process that does nothing but write checkpoints; every complete one must load."""
    run_dir = str(tmp_path / "run")
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'test')!r}]
        from test_training import tiny_model_and_optimizer
        from local.store import rundir
        model, optimizer = tiny_model_and_optimizer()
        step = 0
        while True:
            step += 1
            rundir.save_checkpoint({run_dir!r}, step, model, optimizer, {{"examples_done": step}}, keep=1000)
            print(step, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        for _ in range(3):  # three checkpoints done: it is now in the middle of the fourth or later
            assert process.stdout.readline(), "the checkpoint writer died"
        time.sleep(np.random.default_rng().uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    found = rundir.list_checkpoints(run_dir)
    assert len(found) >= 3
    for step, path in found:
        model, optimizer = tiny_model_and_optimizer(seed=1)
        assert rundir.load_checkpoint(path, model, optimizer)["step"] == step
    rundir.remove_stale_temps(run_dir)
    assert sorted(os.listdir(rundir.checkpoints_dir(run_dir))) == [os.path.basename(p) for _, p in found]


# --- the script end to end -----------------------------------------------------------------------------

def train(data_dir, run_dir, *args):
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_ARGS,
                        "--eval_every=2", "--checkpoint_every=3", "--stuck_check_step=0", *args,
                        env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_train_then_resume_matches_one_straight_run_and_refuses_another_model(tmp_path):
    import keras
    data_dir = write_tone_dataset(tmp_path / "data")
    resumed, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    with ThreadPoolExecutor(1) as pool:  # the straight run alongside the two halves
        straight_run = pool.submit(train, data_dir, straight, "--steps=12", "--genre_conditioning=true")
        train(data_dir, resumed, "--steps=6", "--genre_conditioning=true")
        assert [r["step"] for r in rundir.read_metrics(resumed)] == [2, 4, 6]
        again = train(data_dir, resumed, "--steps=12", "--genre_conditioning=true")
        assert "resuming" in again.stdout and "from step 6" in again.stdout
        straight_run.result()

    rows, straight_rows = rundir.read_metrics(resumed), rundir.read_metrics(straight)
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    for a, b in zip(rows, straight_rows):  # same data order and same optimizer state after the resume
        assert a["train_bits_per_sample"] == pytest.approx(b["train_bits_per_sample"], abs=1e-4)
        assert a["valid_bits_per_sample"] == pytest.approx(b["valid_bits_per_sample"], abs=1e-4)
    assert [s for s, _ in rundir.list_checkpoints(resumed)] == [6, 9, 12]
    with open(os.path.join(resumed, "config.json")) as f:
        assert json.load(f)["steps"] == 12
    info = rundir.read_model_json(resumed)
    assert info["genres"] == ["Low", "High"] and info["sample_rate"] == 1000
    assert info["model"]["dilations"] == [1, 2, 4, 8] and info["model"]["n_genres"] == 2
    assert info["receptive_field"] == 16 and info["quantization_channels"] == 256
    model = keras.models.load_model(os.path.join(resumed, "model.keras"))
    final = keras.models.load_model(os.path.join(straight, "model.keras"))
    for a, b in zip(model.get_weights(), final.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for name in ("loss.png", "tensorboard"):
        assert os.path.exists(os.path.join(resumed, name))

    changed = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={resumed}", *TINY_ARGS,
                         "--genre_conditioning=true", "--residual_channels=16", "--steps=20")
    assert changed.returncode == 2, "resuming with another model must be refused"
    assert changed.stderr.strip().count("\n") == 0 and "residual_channels: 8 -> 16" in changed.stderr


@pytest.mark.slow
def test_max_minutes_stops_early_with_checkpoint_metrics_row_and_model(tmp_path):
    import keras
    data_dir = write_tone_dataset(tmp_path / "data")
    run_dir = str(tmp_path / "run")
    result = train(data_dir, run_dir, "--steps=100000", "--eval_every=1000", "--checkpoint_every=1000",
                   "--max_minutes=0.002")  # 0.12 s: over after the first few steps
    step = rundir.latest_checkpoint(run_dir)[0]
    assert 1 <= step < 100000
    assert f"stopped at step {step}: --max_minutes=0.002 reached" in result.stdout + result.stderr
    assert rundir.read_metrics(run_dir)[-1]["step"] == step  # the row of the last step, off the eval grid
    keras.models.load_model(os.path.join(run_dir, "model.keras"))
    resumed = train(data_dir, run_dir, f"--steps={step + 2}", "--eval_every=1000", "--checkpoint_every=1000")
    assert "stopped at" not in resumed.stdout + resumed.stderr and rundir.latest_checkpoint(run_dir)[0] == step + 2


@pytest.mark.slow
def test_stuck_warning_then_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    data_dir = write_tone_dataset(tmp_path / "data")
    run_dir = str(tmp_path / "run")
    stuck = train(data_dir, run_dir, "--steps=3", "--learning_rate=1e-9", "--stuck_check_step=2")
    assert "warning: the train loss is still" in stuck.stdout  # ~8 bits after 2 steps: the known trap
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_ARGS,
                        "--steps=40", "--learning_rate=1e38", "--grad_clip=0", "--checkpoint_every=1",
                        env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "the loss became nan" in result.stderr or "the loss became inf" in result.stderr
    step, path = rundir.latest_checkpoint(run_dir)
    assert step < 40
    model = build_wavenet(read_run_model(run_dir)[0])
    model.load_weights(os.path.join(path, "model.weights.h5"))
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("splits,message", [
    (None, "holds no processed dataset"),
    (("train", "train", "test"), "needs train and valid tracks"),
])
def test_dataset_problems_are_one_line_errors(tmp_path, splits, message):
    data_dir = str(tmp_path / "data")
    if splits:
        write_tone_dataset(data_dir, splits)
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={tmp_path / 'run'}",
                        *TINY_ARGS)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_too_short_tracks_and_bad_values_are_errors(tmp_path):
    data_dir = write_tone_dataset(tmp_path / "data", seconds=0.05)
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", *TINY_ARGS)
    assert result.returncode == 2 and "longer than receptive_field + window = 80 samples" in result.stderr
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", "--window=0")
    assert result.returncode == 2 and "--window=0" in result.stderr
    result = run_script("run_model_training.py", f"--data_dir={data_dir}", "--quantization_channels=64")
    assert result.returncode == 2 and "--quantization_channels=256" in result.stderr


@pytest.mark.slow
def test_stage_3_runs_in_process_and_a_config_mistake_is_one_line(tmp_path, capsys):
    import run_model_training
    data_dir, run_dir = write_tone_dataset(tmp_path / "data"), str(tmp_path / "run")
    summary = run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_ARGS, "--steps=4",
                                       "--eval_every=2", "--checkpoint_every=2", "--stuck_check_step=0"])
    assert summary["step"] == 4 and summary["stopped"] == "steps" and summary["last_row"]["step"] == 4
    assert [r["step"] for r in rundir.read_metrics(run_dir)] == [2, 4]
    assert [s for s, _ in rundir.list_checkpoints(run_dir)] == [2, 4]
    assert run_model_training.steps == 20000  # the config block is left as written: another main() starts afresh
    capsys.readouterr()
    for args, key in ((["--layers_per_stack=2", "--stacks=0"], "--stacks=0"), (["--learning_rate=0"], "--learning_rate=0"),
                      (["--lr_schedule=linear"], "--lr_schedule=linear")):
        with pytest.raises(SystemExit) as stopped:
            run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={tmp_path / 'other'}", *args])
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and key in error and error.count("--") == 1 and error.count("\n") == 1


@pytest.mark.slow
def test_the_loop_stops_on_its_time_budget_and_callbacks_add_metrics_columns(tmp_path):
    data_dir, run_dir = write_tone_dataset(tmp_path / "data"), str(tmp_path / "run")
    config = {"batch_size": 4, "window": 64, "learning_rate": 1e-3, "grad_clip": 1.0, "cache_tracks": 2,
              "prefetch_batches": 2, "valid_windows": 4, "seed": 0}
    wavenet = WaveNetConfig([1, 2, 4, 8], residual_channels=8, dilation_channels=8, skip_channels=16)
    train_tracks, valid_tracks = runner.usable_splits(dataset_files.read_index(data_dir), wavenet.receptive_field,
                                                        64, data_dir, 1000)
    task = wavenet_task.wavenet_task(wavenet, train_tracks=train_tracks, valid_tracks=valid_tracks, config=config)
    with rundir.locked(run_dir, wavenet_task.wavenet_model_json(wavenet, genres=["Low", "High"], sample_rate=1000,
                                                            data_dir=data_dir)):
        seen = []

        def judge(evaluation):
            seen.append((evaluation.step, evaluation.final))
            return {"judge_genre_accuracy": 0.5}

        summary = loop.train(task, run_dir, loop.resume(run_dir, task.model, task.optimizer), config=config,
                                 steps=1000, eval_every=100, checkpoint_every=100, keep_checkpoints=2,
                                 max_minutes=1e-9, on_evaluate=[judge])
        assert summary["stopped"] == "max_minutes" and summary["step"] == 1 and seen == [(1, True)]
        rows = rundir.read_metrics(run_dir)
        assert [r["step"] for r in rows] == [1] and rows[0]["judge_genre_accuracy"] == 0.5
        assert rundir.latest_checkpoint(run_dir)[0] == 1 and os.path.isfile(os.path.join(run_dir, "model.keras"))
        with open(os.path.join(run_dir, "metrics.csv")) as f:  # extra columns after the standard ones
            assert f.readline().strip().split(",")[-1] == "judge_genre_accuracy"

        # the schedule is told how much of the time budget is used, counted across resumes: 30 s of 60 already
        state = loop.resume(run_dir, task.model, task.optimizer)
        state["elapsed_seconds"] = 30.0
        fractions = []
        loop.train(task, run_dir, state, config=config, steps=3, eval_every=100, checkpoint_every=100,
                       keep_checkpoints=2, max_minutes=1.0,
                       learning_rate_at=lambda step, time_fraction: fractions.append(time_fraction) or 1e-3)
        assert len(fractions) == 2 and 0.5 <= fractions[0] < fractions[1] < 1.0, fractions


@pytest.mark.slow
def test_a_context_stack_run_trains_on_windows_with_its_past_resumes_and_samples(tmp_path):
    """Issue 18: each window brings context_past codes for the context stack; model.json gives the whole
    model's receptive field; the run resumes; the clips sampled at the end come from the context model."""
    import keras

    import run_model_training
    data_dir, run_dir = write_tone_dataset(tmp_path / "data"), str(tmp_path / "run")
    context = ["--context_rate=8", "--context_layers=3", "--context_channels=4", "--genre_conditioning=true"]
    wavenet = WaveNetConfig.from_config({"dilations": [1, 2, 4, 8], "context_rate": 8, "context_layers": 3,
                                         "residual_channels": 8, "dilation_channels": 8, "skip_channels": 16})
    task = wavenet_task.wavenet_task(wavenet, train_tracks=dataset_files.read_index(data_dir)[:3],
                                 valid_tracks=dataset_files.read_index(data_dir)[3:4],
                                 config={"batch_size": 4, "window": 64, "learning_rate": 1e-3, "grad_clip": 1.0,
                                         "cache_tracks": 2, "prefetch_batches": 1, "valid_windows": 4, "seed": 0})
    features, targets = next(iter(task.batches(0)))
    assert wavenet.context_past == 64 and features["codes"].shape == (4, 64 + 16 + 64 - 1)
    assert task.model(wavenet.model_inputs(features["codes"], features["genre_id"])).shape == (4, 16 + 64 - 1, 256)
    summary = run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_ARGS, *context,
                                       "--steps=2", "--eval_every=2", "--checkpoint_every=2", "--stuck_check_step=0",
                                       "--sample_every=2", "--sample_seconds=0.1"])
    assert summary["step"] == 2
    summary = run_model_training.main([f"--data_dir={data_dir}", f"--run_dir={run_dir}", *TINY_ARGS, *context,
                                       "--steps=4", "--eval_every=2", "--checkpoint_every=2", "--stuck_check_step=0",
                                       "--sample_every=2", "--sample_seconds=0.1"])
    assert summary["step"] == 4 and [r["step"] for r in rundir.read_metrics(run_dir)] == [2, 4]
    info = rundir.read_model_json(run_dir)
    assert info["model"]["context_rate"] == 8 and info["model"]["context_dilations"] == [1, 2, 4]
    assert info["total_receptive_field"] == 9 * 8 - 2 + 15 and info["total_receptive_field_seconds"] == 0.085
    assert info["context_past"] == 64
    with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as f:
        assert "85 samples (0.085 s)" in f.read()  # the page gives the whole model's receptive field
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert model.get_layer("layer0_ctx") is not None
    assert any(name.endswith(".wav") for _, _, names in os.walk(os.path.join(run_dir, "samples")) for name in names)


def test_start_from_silence_gives_windows_that_begin_with_the_generators_silence(tmp_path):
    """--start_from_silence: train windows also start at a track's first code with the context past and the
    receptive field silent before it, as the generator starts; without it no window reads such silence."""
    data_dir = write_tone_dataset(tmp_path / "data")  # 3 s tones: never 16 codes of silence (128) in a row
    wavenet = WaveNetConfig.from_config({"dilations": [1, 2, 4, 8], "context_rate": 8, "context_layers": 3,
                                         "residual_channels": 8, "dilation_channels": 8, "skip_channels": 16})
    index = dataset_files.read_index(data_dir)
    config = {"batch_size": 4, "window": 64, "learning_rate": 1e-3, "grad_clip": 1.0, "cache_tracks": 2,
              "prefetch_batches": 1, "valid_windows": 4, "seed": 0}

    def silent_windows(start_from_silence):
        """Train windows, over one epoch, whose first 16 codes are the silence code."""
        task = wavenet_task.wavenet_task(wavenet, train_tracks=index[:3], valid_tracks=index[3:4],
                                     config=dict(config, start_from_silence=start_from_silence))
        # field = 64 + 16 codes: with the lead-in each track's first window reads >= 16 codes of silence
        n_batches = 3 * 3000 // 64 // 4 + 2
        return sum(int((features["codes"].numpy()[:, :16] == wavenet.silence_code).all(axis=1).sum())
                   for (features, _), _ in zip(task.batches(0), range(n_batches)))

    assert silent_windows(True) >= 3 and silent_windows(False) == 0
