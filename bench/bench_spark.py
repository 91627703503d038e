"""Benchmark the Spark jobs beside their local counterparts, on the same data, in one run.

Stage 2: the same FMA-like clips (30 s, 44.1 kHz stereo mp3) through the local stage (a pool of `cores`
processes) and through aws/spark_dataset.preprocess_spark on local[`cores`] (session start excluded,
and the workers' first job, reported apart): audio-seconds per wall-second, and per core (what the EMR sizing table scales up).
Stage 3: one epoch of aws/spark_training.py (Elephas, synchronous, `cores` workers) and plain Keras fit on
the very same windows with the same model and batch size: training samples (targets) per second.

Run:
  .venv/bin/python bench/bench_spark.py
  .venv/bin/python bench/bench_spark.py --tracks=16 --cores=2

Spark's few fixed seconds per job (listing, planning, commit) weigh on 6 minutes of audio, not on 900 days:
the executors' own decoding rate per core (audio seconds / core-seconds spent in process_batch, measured in
the tasks) is what the EMR sizing table scales up, plus the fixed seconds per job (the rest of the wall time).

Prints one JSON line: spark_realtime_factor, local_realtime_factor (and per core), the executors' rate per
core and the fixed seconds per job, spark_startup_seconds,
elephas_samples_per_second, keras_samples_per_second and their ratios.
"""
import json
import os
import runpy
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from local.core.config import configure

tracks = 12  # generated clips (3 genres, the same number in each)
seconds = 30.0  # length of each clip, seconds (FMA's clips are 30 s)
source_rate = 44100  # Hz of the generated stereo mp3s
cores = 2  # local[cores] for Spark, pool size for the local stage, Elephas workers
window = 1024  # training: output samples per example
batch_size = 8  # training: examples per step
dilations = [1, 2, 4, 8, 16, 32]  # training: a small stack (receptive field 64), so the bench stays short
channels = 16  # training: residual and dilation channels (skip channels = 2x)

config = configure(globals())
# -----------------------------------------------------------------------------

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

from bench.clips import write_fma_like_clips
from local.collect import demo_corpus
from local.dataset import build
from local.store import rundir

work = tempfile.mkdtemp(prefix="bench-spark-")
raw = os.path.join(work, "raw")
audio_seconds = write_fma_like_clips(raw, tracks, seconds, source_rate)
split = dict(valid_fraction=0.25, test_fraction=0.0, split_seed=0)

# warm-up outside the timings (imports, first compiles), then the local stage
build.preprocess(os.path.join(raw, demo_corpus.DEMO_GENRES[0]), os.path.join(work, "warm"), workers=1,
                         progress=False)
start = time.perf_counter()
build.preprocess(raw, os.path.join(work, "local"), workers=cores, progress=False, **split)
local_seconds = time.perf_counter() - start

from aws import spark_dataset, spark_io

start = time.perf_counter()
spark = spark_io.start_spark("waveforms-bench", f"local[{cores}]", {"spark.ui.enabled": "false"})
spark.range(cores).rdd.map(lambda x: x).count()  # the Python workers are up
startup_seconds = time.perf_counter() - start
start = time.perf_counter()  # first job: every Python worker imports librosa and compiles, once per executor
spark_dataset.preprocess_spark(spark, os.path.join(raw, demo_corpus.DEMO_GENRES[0]), os.path.join(work, "swarm"))
spark_warmup_seconds = time.perf_counter() - start
start = time.perf_counter()
summary = spark_dataset.preprocess_spark(spark, raw, os.path.join(work, "spark"), **split)
spark_seconds = time.perf_counter() - start
task_rtf = audio_seconds / summary["decode_core_seconds"]  # per core, inside the executors' tasks
assert summary["processed"] == tracks, summary["failed"]

# Elephas: one epoch of the real job on the dataset just made (borrows this session)
run_dir = os.path.join(work, "run")
model_args = [f"--dilations={','.join(map(str, dilations))}", f"--residual_channels={channels}",
              f"--dilation_channels={channels}", f"--skip_channels={2 * channels}", f"--window={window}",
              f"--batch_size={batch_size}", "--valid_windows=8", "--epochs=1", f"--num_workers={cores}"]
saved_argv = sys.argv
sys.argv = [os.path.join(ROOT, "aws", "spark_training.py"), f"--data_dir={os.path.join(work, 'spark')}",
            f"--run_dir={run_dir}", *model_args]
runpy.run_path(sys.argv[0], run_name="__main__")
sys.argv = saved_argv
from local.train import loop

elephas_samples_per_second = rundir.read_metrics(run_dir)[-1]["samples_per_second"]

# Keras alone on the same windows (epoch 0's phases, as the job cut them), same model and batch size
import keras

from aws import spark_windows
from local.dataset import windows as dataset
from local.model.wavenet import build_wavenet, read_run_model
from local.store import dataset_files

wavenet = read_run_model(run_dir)[0]
field = wavenet.receptive_field
inputs, targets = [], []
for row in dataset.split_tracks(dataset_files.read_index(os.path.join(work, "spark")), "train"):
    codes = dataset_files.read_track_codes(row)
    rng = np.random.default_rng(spark_windows.track_seed(1234, 0, row["track_id"]))
    starts = dataset.track_starts(len(codes), field, window, rng)
    x, y = dataset.windows_from_codes(codes, field, window, starts)
    inputs.append(x.astype(np.uint8))
    targets.append(y.astype(np.uint8))
x, y = np.concatenate(inputs), np.concatenate(targets)
model = build_wavenet(wavenet)
model.compile(optimizer=loop.make_optimizer(1e-3, 1.0), loss=spark_windows.next_code_loss)
model.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)  # trace once
start = time.perf_counter()
model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
keras_samples_per_second = y.size / (time.perf_counter() - start)
spark_io.stop_spark(spark)
shutil.rmtree(work, ignore_errors=True)

spark_rtf, local_rtf = audio_seconds / spark_seconds, audio_seconds / local_seconds
print(json.dumps({
    "tracks": tracks, "audio_seconds": audio_seconds, "cores": cores,
    "source": f"{source_rate} Hz stereo mp3 -> 16000 Hz codes",
    "spark_realtime_factor": round(spark_rtf, 1), "local_realtime_factor": round(local_rtf, 1),
    "spark_vs_local": round(spark_rtf / local_rtf, 2),
    "spark_realtime_factor_per_core": round(spark_rtf / cores, 1),
    "spark_task_realtime_factor_per_core": round(task_rtf, 1),
    "spark_fixed_seconds_per_job": round(spark_seconds - audio_seconds / task_rtf / cores, 1),
    "local_realtime_factor_per_core": round(local_rtf / cores, 1),
    "spark_startup_seconds": round(startup_seconds, 1),
    "spark_first_job_seconds": round(spark_warmup_seconds, 1),
    "training_windows": int(len(y)), "window": window, "batch_size": batch_size,
    "elephas_samples_per_second": round(elephas_samples_per_second),
    "keras_samples_per_second": round(keras_samples_per_second),
    "elephas_vs_keras": round(elephas_samples_per_second / keras_samples_per_second, 2),
}))
