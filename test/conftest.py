"""Shared fixtures. Spark starts once per test run (about 20 s), only when a test asks for it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# The test tiers (markers in pytest.ini; `make test-fast` leaves these out): a test is marked by the services
# and trainings its fixtures start, so a new test lands in the right tier without a mark of its own; tests
# whose own body trains or runs whole stages carry @pytest.mark.slow.
FIXTURE_MARKS = {"spark": "spark", "tiny_dataset": "spark", "standalone_cluster": "cluster", "s3_server": "s3",
                 "moto_server": "s3", "demo_tagger": "slow", "project": "slow", "tiny_run": "slow"}
# measured over 10 s on 2 cores (compiling the generator's kernels, fitting a model, whole stage-2 reruns)
SLOW_TESTS = {"test_sampled_distributions_equal_the_full_forward_pass", "test_overfit_a_chord",
              "test_genre_conditioning_generates_each_genres_tone",
              "test_rerun_is_idempotent_and_additions_never_move_a_track",
              "test_a_second_stage2_run_on_one_out_dir_is_refused_and_rows_are_never_doubled"}
MODULE_MARKS = {"test_spark_cluster": "cluster", "test_spark_training": "spark", "test_end_to_end": "slow",
                "test_sweep_training": "slow"}


def pytest_collection_modifyitems(items):
    for item in items:
        marks = {mark for name, mark in FIXTURE_MARKS.items() if name in item.fixturenames}
        marks.add(MODULE_MARKS.get(item.module.__name__))
        if item.originalname in SLOW_TESTS:
            marks.add("slow")
        if "chromium" in item.name or "browser" in item.name:
            marks.add("browser")
        for mark in sorted(m for m in marks if m):
            item.add_marker(mark)


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession shared by every test that needs one (UI off, loopback only)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("waveforms-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.executorEnv.PYTHONPATH", ROOT)
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A real Spark standalone cluster - a master and two 1-core workers in their own JVMs on 127.0.0.1, the
    one `make cluster-demo` starts (aws/local_cluster.py) - shared by the tests that spark-submit to it."""
    from aws.local_cluster import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("cluster")), workers=2, worker_cores=1,
                           worker_memory="1g") as cluster:
        yield cluster


# The demo genres, 6 tracks of 4 s each: 4 train, 1 valid, 1 test per genre (splits set in the manifest, as a
# source like FMA sets them), through the real stage 2; and one small tagger trained on them by the real stage 3
# (in this process: one TensorFlow start-up less), shared by test_tagger, test_judge and test_predictions.
TAGGER_ARGS = ("--model=tagger", "--tagger_input_samples=6561", "--tagger_channels=16,16,32,32,64,64,64,64",
               "--tagger_steps=120", "--tagger_batch_size=16", "--eval_every=40", "--checkpoint_every=60",
               "--valid_windows=16", "--tagger_eval_windows=8")


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    """{"raw", "data_dir", "manifest"}: the demo dataset below (stage 1's layout and stage 2's output), no tagger."""
    import csv

    from local.collect import demo_corpus
    from local.dataset import build
    from local.store import manifest

    root = tmp_path_factory.mktemp("demo")
    raw, data_dir = str(root / "raw"), str(root / "processed")
    demo_corpus.write_demo_corpus(raw, tracks_per_genre=6, seconds=4.0, progress=False)
    rows = list(manifest.read_manifest(raw).values())
    for row in rows:
        row["split"] = {4: "validation", 5: "test"}.get(int(row["track_id"][-3:]), "training")
    with open(os.path.join(raw, "manifest.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=manifest.MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    build.preprocess(raw, data_dir, progress=False)
    return {"root": root, "raw": raw, "data_dir": data_dir, "manifest": rows}


@pytest.fixture(scope="session")
def demo_tagger(tmp_path_factory, demo_dataset):
    """{"raw", "data_dir", "run_dir", "manifest", "summary", "train_stdout"}: a demo dataset and a tagger trained
    on it (~1 min on 2 cores)."""
    import contextlib
    import io

    import run_model_training

    run_dir = str(tmp_path_factory.mktemp("tagger") / "tagger")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = run_model_training.main([f"--data_dir={demo_dataset['data_dir']}", f"--run_dir={run_dir}",
                                           *TAGGER_ARGS])
    return {**demo_dataset, "run_dir": run_dir, "summary": summary, "train_stdout": stdout.getvalue()}
