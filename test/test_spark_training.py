"""aws/spark_training.py on a real local[2] Spark with Elephas: a tiny dataset, one epoch, a run_dir that
run_model_predictions.py uses unchanged, then a resume; plus the Elephas guards on their own."""
import math
import os
import runpy
import sys

import numpy as np
import pytest
from helpers import ROOT, make_audio, run_script

from local.dataset import build
from local.dataset import windows as dataset
from local.model.wavenet import read_run_model
from local.store import rundir

MODEL_ARGS = ["--dilations=1,2,4", "--residual_channels=8", "--dilation_channels=8", "--skip_channels=16",
              "--genre_channels=4", "--window=128", "--batch_size=4", "--valid_windows=6", "--seed=7"]


def run_job(argv):
    """Run aws/spark_training.py in this process (it borrows the tests' SparkSession); return its exit code."""
    saved = sys.argv
    sys.argv = [os.path.join(ROOT, "aws", "spark_training.py"), *argv]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = saved


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    raw, out = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("data")
    for g, genre in enumerate(("Rock", "Jazz")):
        for i in range(4):
            make_audio(str(raw / genre / f"{genre}{i}.wav"), seconds=0.6, sample_rate=16000,
                       freq_hz=200 + 150 * g + 40 * i, seed=i)
    build.preprocess(str(raw), str(out), min_seconds=0.3, valid_fraction=0.25, test_fraction=0.0,
                             split_seed=1, progress=False)
    return str(out)


def test_one_epoch_writes_a_run_dir_that_prediction_uses_and_a_rerun_resumes(spark, tiny_dataset, tmp_path):
    import keras
    run_dir = str(tmp_path / "run")
    run_uri = f"file://{run_dir}"  # a URI: written locally, published file by file, fetched back to resume
    assert run_job([f"--data_dir={tiny_dataset}", f"--run_dir={run_uri}", "--epochs=1", "--genre_conditioning=true",
                    *MODEL_ARGS]) == 0
    assert {"model.keras", "model.json", "config.json", "metrics.csv", "loss.png"} <= set(os.listdir(run_dir))
    assert not [n for n in os.listdir(run_dir) if n.startswith(".")]  # no temp files published
    step = rundir.read_metrics(run_dir)[0]["step"]
    assert sorted(os.listdir(os.path.join(run_dir, "samples", f"step-{step}"))) == \
        ["Jazz_00.png", "Jazz_00.wav", "Rock_01.png", "Rock_01.wav", "samples.json"]  # the epoch's clips, published
    with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as f:
        assert f'src="samples/step-{step}/Rock_01.wav"' in f.read()
    info = rundir.read_model_json(run_dir)
    assert info["genres"] == ["Jazz", "Rock"] and info["model"]["dilations"] == [1, 2, 4]
    assert info["model"]["genre_conditioning"] is True and info["receptive_field"] == 8
    rows = rundir.read_metrics(run_dir)
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    assert all(math.isfinite(rows[0][k]) for k in ("train_bits_per_sample", "valid_bits_per_sample",
                                                   "samples_per_second"))
    # every train sample is a target about once: step = windows / batch_size
    from local.store import dataset_files
    train = dataset.split_tracks(dataset_files.read_index(tiny_dataset), "train")
    n_windows = sum(dataset.examples_per_track(t["n_samples"], 8, 128) for t in train)
    assert rows[0]["step"] == n_windows // 4

    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))  # plain Keras, no custom objects
    assert [t.name for t in model.inputs] == ["codes", "genre_id"]
    fresh = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    step, path = rundir.latest_checkpoint(run_dir)
    fresh.load_weights(os.path.join(path, "model.weights.h5"))
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    from local.model.wavenet import build_wavenet
    keras.utils.set_random_seed(7)  # the job's seed: these are the weights it started from
    initial = build_wavenet(read_run_model(run_dir)[0])
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), initial.get_weights()))

    generated = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={tmp_path / 'gen'}",
                           "--seconds=0.2", "--genre=Rock", "--streams=1", timeout=300)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert any(n.endswith(".wav") for n in os.listdir(tmp_path / "gen"))

    assert run_job([f"--data_dir={tiny_dataset}", f"--run_dir={run_uri}", "--epochs=2", "--genre_conditioning=true",
                    "--keep_checkpoints=1", *MODEL_ARGS]) == 0
    rows = rundir.read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["step"] == 2 * rows[0]["step"]
    assert rundir.latest_checkpoint(run_dir)[0] == rows[1]["step"]
    # the published run keeps keep_checkpoints=1 too: epoch 1's checkpoint is pruned there after epoch 2's
    assert os.listdir(os.path.join(run_dir, "checkpoints")) == [rundir.checkpoint_name(rows[1]["step"])]

    changed = run_job([f"--data_dir={tiny_dataset}", f"--run_dir={run_uri}", "--epochs=3", *MODEL_ARGS])
    assert changed == 2  # genre_conditioning differs from the saved model: refused, nothing trained
    assert len(rundir.read_metrics(run_dir)) == 2


def test_windows_are_balanced_above_batch_size_and_targets_are_next_codes(spark):
    from aws import spark_windows
    codes = np.arange(1000, dtype=np.uint8).tobytes()
    from pyspark.sql import Row
    rows = [Row(track_id=f"t{i}", genre_id=i % 2, n_samples=1000, codes=codes) for i in range(3)]
    windows = spark.sparkContext.parallelize(rows, 3).mapPartitions(
        lambda part: spark_windows.train_windows(part, receptive_field=8, window=100, seed=0, epoch=0, conditioned=True))
    dealt, n, k = spark_windows.balanced_windows(windows, batch_size=6, num_workers=4)
    sizes = dealt.glom().map(len).collect()
    assert n == 3 * ((1000 - 8) // 100) == 27 and k == 3  # 27 // (6 + 1) = 3 partitions, not 4
    assert sum(sizes) == 27 and min(sizes) > 6 and max(sizes) - min(sizes) <= 1
    x, y = dealt.first()
    assert x.dtype == np.uint8 and y.dtype == np.uint8 and x.shape == (1 + 8 + 100 - 1,) and y.shape == (100,)
    np.testing.assert_array_equal(y[:-1], x[1 + 8:])  # genre column, then codes: targets = inputs shifted by one
    assert spark_windows.balanced_windows(windows, batch_size=40, num_workers=4)[2] == 0  # too few: refused


def test_led_in_windows_start_after_silence_as_the_local_trainer_cuts_them():
    """--start_from_silence on the executors: the windows of local.dataset.windows.lead_in's tracks, genre column first."""
    from pyspark.sql import Row

    from aws import spark_windows
    from local.dataset import windows as dataset
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, 300).astype(np.uint8)
    row = Row(track_id="t0", genre_id=2, n_samples=300, codes=codes.tobytes())
    pairs = list(spark_windows.train_windows([row], receptive_field=16, window=8, seed=0, epoch=0, conditioned=True,
                                             lead=16, silence_code=128))
    assert len(pairs) == (300 + 16 - 16) // 8 == 37  # the targets tile the whole track
    led = dataset.silence_first(codes, 16, 128)
    # (offset of its first target in the track, inputs) of each window; the earliest reads silence first
    at, first_x = min((led.tobytes().find(y.tobytes()) - 16, x) for x, y in pairs)
    assert first_x[0] == 2 and 0 <= at < 8 and (first_x[1:1 + 16 - at] == 128).all()
    plain = list(spark_windows.train_windows([row], receptive_field=16, window=8, seed=0, epoch=0, conditioned=True))
    assert len(plain) == (300 - 16) // 8
    valid = dict(spark_windows.valid_windows([row], 16, 8, {"t0": 4}, 16, 128))["t0"]
    local_valid = dataset.validation_windows(led, 2, 16, 8, 4)
    np.testing.assert_array_equal(valid[0]["codes"], local_valid[0]["codes"])
    np.testing.assert_array_equal(valid[1], local_valid[1])


def test_async_model_stops_its_parameter_server_when_fit_fails(spark):
    import socket

    from aws import spark_windows
    from local.model.wavenet import WaveNetConfig, build_wavenet
    model = build_wavenet(WaveNetConfig(dilations=[1], residual_channels=4, dilation_channels=4, skip_channels=4))
    model.compile(optimizer="adam", loss=spark_windows.next_code_loss)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spark_model = spark_windows.elephas_model(model, mode="asynchronous", frequency="epoch", port=port, batch_size=4,
                                              custom_objects=spark_windows.CUSTOM_OBJECTS)
    assert spark_model.parameter_server.debug is False
    bad = spark.sparkContext.parallelize([("not", "windows")] * 12, 1)  # more rows than batch_size: fit runs
    with pytest.raises(Exception):
        spark_windows.fit_epoch(spark_model, bad, 4)
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))


def test_config_mistakes_answer_before_spark_starts(tmp_path):
    for args, word in ((["--mode=fast"], "mode"), (["--batch_size=0"], "batch_size"), (["--dilations=0"], "dilations"),
                       (["--epochs=two"], "epochs"), (["--layers_per_stack=3", "--stacks=0"], "--stacks=0")):
        result = run_script("aws/spark_training.py", *args, f"--run_dir={tmp_path / 'r'}", timeout=60)
        assert result.returncode == 2 and word in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_a_context_stack_model_trains_on_executors_and_round_trips(spark, tiny_dataset, tmp_path):
    """Issue 18: the context keys reach the Spark trainer; Elephas rebuilds the model from model.to_json() on
    the executors, trains it on windows that bring the context's past, and model.keras keeps the stack."""
    import keras
    run_dir = str(tmp_path / "run")
    assert run_job([f"--data_dir={tiny_dataset}", f"--run_dir={run_dir}", "--epochs=1", "--genre_conditioning=true",
                    "--context_rate=16", "--context_layers=3", "--context_channels=4", "--sample_seconds=0.05",
                    *MODEL_ARGS]) == 0
    info = rundir.read_model_json(run_dir)
    assert info["model"]["context_rate"] == 16 and info["context_past"] == 128
    assert info["total_receptive_field"] == 9 * 16 - 2 + 7
    rows = rundir.read_metrics(run_dir)
    assert len(rows) == 1 and math.isfinite(rows[0]["train_bits_per_sample"])
    from local.store import dataset_files
    train = dataset.split_tracks(dataset_files.read_index(tiny_dataset), "train")
    assert rows[0]["step"] == sum(dataset.examples_per_track(t["n_samples"], 128 + 8, 128) for t in train) // 4
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert model.get_layer("context2_conv").get_config()["dilation_rate"] == (4,)
    # --start_from_silence: the tracks start after the generator's silence, so an epoch has more windows
    led_dir = str(tmp_path / "led")
    assert run_job([f"--data_dir={tiny_dataset}", f"--run_dir={led_dir}", "--epochs=1", "--genre_conditioning=true",
                    "--context_rate=16", "--context_layers=3", "--context_channels=4", "--sample_seconds=0",
                    "--start_from_silence=true", *MODEL_ARGS]) == 0
    led_rows = rundir.read_metrics(led_dir)
    assert led_rows[0]["step"] == sum(dataset.examples_per_track(t["n_samples"] + 136, 136, 128) for t in train) // 4
    assert led_rows[0]["step"] > rows[0]["step"] and math.isfinite(led_rows[0]["valid_bits_per_sample"])
