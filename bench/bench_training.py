"""Benchmark stage 3: does the Parquet-fed input pipeline keep the train step busy, and is memory flat?

Builds two synthetic processed datasets (real Parquet parts, like stage 2 writes): a small one of
`tracks` tracks and one 10x larger. For each, a fresh process trains the same model with the real
pipeline (TrainStream -> tf.data with prefetch -> compiled train step) and, alternating with it in the
same process, on one constant in-memory batch, so the two rates are measured side by side on the same
busy machine. Peak RSS is the process's maximum resident memory over the whole measurement.

Run:
  .venv/bin/python bench/bench_training.py                    # the demo model (make demo's), ~2-3 min
  .venv/bin/python bench/bench_training.py --layers_per_stack=10 --stacks=2 --skip_channels=128 --batch_size=8

Prints one JSON line: steps_per_second_fed, steps_per_second_in_memory, pipeline_efficiency (fed / in
memory; goal >= 0.95), peak_rss_mb_small, peak_rss_mb_10x, rss_growth (10x / small - 1; goal <= 0.10),
plus the same rates on the 10x dataset and the settings.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from local.config import configure  # noqa: E402

# --- model (defaults = the make demo model) ---
layers_per_stack = 10  # dilations 1..2**(layers_per_stack-1)
stacks = 1  # repeated this many times
filter_width = 2  # taps of each dilated convolution
residual_channels = 32  # channels of the residual path
dilation_channels = 32  # channels of the gated units
skip_channels = 64  # channels of the skip path and the head
genre_conditioning = True  # condition on the genre
# --- data ---
batch_size = 4  # examples per step
window = 2000  # output samples per example
cache_tracks = 8  # tracks held in memory by the stream
prefetch_batches = 8  # tf.data prefetch depth
tracks = 24  # tracks of the small dataset (the 10x one has 10 times as many)
track_seconds = 10.0  # length of each synthetic track, seconds at sample_rate
sample_rate = 16000  # Hz
# --- measurement ---
warmup_steps = 10  # steps before timing (tracing, first reads)
rounds = 4  # alternating rounds of fed / in-memory timing
steps_per_round = 15  # steps timed per round and mode
seed = 0  # data and weights
dataset_dir = ""  # where the synthetic datasets go (empty = a temp folder, removed afterwards)
measure = ""  # internal: the dataset a child process measures

config = configure(globals())
# -----------------------------------------------------------------------------


def make_dataset(directory, n_tracks, seed):
    """A processed dataset of synthetic music-like tracks (sum of tones + noise, mu-law coded)."""
    import librosa
    import numpy as np
    from local import dataset_store
    from local.fileio import write_json_atomic
    rng = np.random.default_rng(seed)
    writer = dataset_store.PartWriter(directory, rows_per_part=64)
    t = np.arange(int(track_seconds * sample_rate)) / sample_rate
    genres = ["A", "B", "C"]
    for i in range(n_tracks):
        freqs = rng.uniform(80, 1000, 3)
        x = sum(0.2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) for f in freqs)
        x = x + 0.05 * rng.standard_normal(len(t))
        codes = (librosa.mu_compress(np.clip(x, -1, 1), mu=255, quantize=True) + 128).astype(np.uint8)
        split = "valid" if i % 10 == 9 else "train"
        writer.write({"track_id": f"t{i:05d}", "genre": genres[i % 3], "genre_id": i % 3, "split": split,
                      "sample_rate": sample_rate, "n_samples": len(codes), "codes": codes.tobytes(),
                      "source_path": f"t{i}.wav", "source_sha256": f"{i}"})
    writer.close()
    index = dataset_store.read_index(directory)
    write_json_atomic(os.path.join(directory, "dataset.json"),
                      dataset_store.summarize(index, sample_rate, 256, genres))


def measure_dataset(directory):
    """Train on ``directory`` fed and in memory, alternating; return rates and this process's peak RSS."""
    import resource
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from local import dataset, dataset_store, training
    from local.wavenet import WaveNetConfig, build_wavenet
    wavenet = WaveNetConfig.from_config({"layers_per_stack": layers_per_stack, "stacks": stacks,
                                         "filter_width": filter_width, "residual_channels": residual_channels,
                                         "dilation_channels": dilation_channels, "skip_channels": skip_channels,
                                         "genre_conditioning": genre_conditioning}, n_genres=3)
    field = wavenet.receptive_field
    index = dataset_store.read_index(directory)
    keras.utils.set_random_seed(seed)
    model = build_wavenet(wavenet)
    optimizer = training.make_optimizer(1e-3)
    train_step = training.make_train_step(model, wavenet, optimizer, window)
    stream = dataset.TrainStream(dataset.split_tracks(index, "train"), field, window, batch_size, seed=seed,
                                 cache_tracks=cache_tracks)
    fed = iter(dataset.to_tf_dataset(stream, 0, prefetch_batches))
    constant = next(fed)  # one real batch, kept as tensors
    for _ in range(warmup_steps):
        float(train_step(*next(fed)))
        float(train_step(*constant))
    seconds = {"fed": 0.0, "memory": 0.0}
    for _ in range(rounds):
        for mode in ("fed", "memory"):
            start = time.perf_counter()
            for _ in range(steps_per_round):
                float(train_step(*(next(fed) if mode == "fed" else constant)))  # the script syncs every step too
            seconds[mode] += time.perf_counter() - start
    steps = rounds * steps_per_round
    return {"steps_per_second_fed": steps / seconds["fed"], "steps_per_second_in_memory": steps / seconds["memory"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "train_tracks": len(stream.tracks), "epoch_examples": stream.epoch_examples}


if measure:
    print(json.dumps(measure_dataset(measure)))
    sys.exit(0)

root = dataset_dir or tempfile.mkdtemp(prefix="bench_training_")
results = {}
try:
    for name, n_tracks in (("small", tracks), ("10x", 10 * tracks)):
        directory = os.path.join(root, name)
        if not os.path.isfile(os.path.join(directory, "dataset.json")):
            started = time.perf_counter()
            make_dataset(directory, n_tracks, seed)
            print(f"{name}: {n_tracks} tracks written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        args = [f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in config.items()
                if k not in ("measure", "dataset_dir")]
        child = subprocess.run([sys.executable, os.path.abspath(__file__), *args, f"--measure={directory}"],
                               capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"error: measuring {directory} failed:\n{child.stderr[-3000:]}")
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{name}: {results[name]}", file=sys.stderr)
finally:
    if not dataset_dir:
        shutil.rmtree(root, ignore_errors=True)

small, large = results["small"], results["10x"]
print(json.dumps({
    "steps_per_second_fed": round(small["steps_per_second_fed"], 3),
    "steps_per_second_in_memory": round(small["steps_per_second_in_memory"], 3),
    "pipeline_efficiency": round(small["steps_per_second_fed"] / small["steps_per_second_in_memory"], 3),
    "peak_rss_mb_small": round(small["peak_rss_mb"], 1),
    "peak_rss_mb_10x": round(large["peak_rss_mb"], 1),
    "rss_growth": round(large["peak_rss_mb"] / small["peak_rss_mb"] - 1, 3),
    "pipeline_efficiency_10x": round(large["steps_per_second_fed"] / large["steps_per_second_in_memory"], 3),
    "train_tracks_small": small["train_tracks"], "train_tracks_10x": large["train_tracks"],
    "samples_per_second_fed": round(small["steps_per_second_fed"] * batch_size * window),
    "batch_size": batch_size, "window": window, "layers": layers_per_stack * stacks,
    "residual_channels": residual_channels, "skip_channels": skip_channels,
}))
