"""Benchmark the clips sampled while training: what one sampling costs against the training it interrupts.

Builds the model (make demo's by default), then alternates, in one process on the same busy machine, timing
`steps_per_round` compiled train steps on an in-memory batch and one `write_step_samples` (one clip of
`sample_seconds` per genre, WAV + spectrogram PNG, as run_model_training.py does every `sample_every` steps).
The generator is compiled (or loaded from numba's cache) before timing.

Run:
  .venv/bin/python bench/bench_sampling.py                          # the demo model, ~1 min
  .venv/bin/python bench/bench_sampling.py --layers_per_stack=10 --stacks=2 --skip_channels=128 --batch_size=8 \
      --window=4000                                                   # run_model_training.py's defaults

Prints one JSON line: seconds_per_sampling, train_seconds_per_step, and the share of the run that sampling
takes at sample_every = 100 and 1000 (sampling / (sampling + sample_every x step time)), plus the settings.
"""
import json
import os
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from local.core.config import configure

# --- model (defaults = the make demo model) ---
layers_per_stack = 10  # dilations 1..2**(layers_per_stack-1)
stacks = 1  # repeated this many times
residual_channels = 32  # channels of the residual path
dilation_channels = 32  # channels of the gated units
skip_channels = 64  # channels of the skip path and the head
genres = 3  # genres of the conditioned model (one clip each)
batch_size = 4  # examples per train step
window = 2000  # output samples per example
sample_rate = 16000  # Hz
# --- measurement ---
sample_seconds = 2.0  # length of each sampled clip, seconds
rounds = 3  # alternating rounds of training steps and one sampling
steps_per_round = 20  # train steps timed per round
seed = 0

config = configure(globals())
# -----------------------------------------------------------------------------

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np

from local.generate import samples
from local.model.wavenet import WaveNetConfig, build_wavenet
from local.train import loop, wavenet_task

wavenet = WaveNetConfig.from_config({**config, "genre_conditioning": True}, n_genres=genres)
keras.utils.set_random_seed(seed)
model = build_wavenet(wavenet)
field = wavenet.receptive_field
keys = dict(genres=[f"Genre{g}" for g in range(genres)], sample_rate=sample_rate, seed=seed)
optimizer = loop.make_optimizer(1e-3)
train_step = wavenet_task.make_train_step(model, wavenet, optimizer, window)
rng = np.random.default_rng(seed)
features = {"codes": rng.integers(0, 256, (batch_size, field + window - 1)).astype(np.int32),
            "genre_id": rng.integers(0, genres, batch_size).astype(np.int32)}
targets = rng.integers(0, 256, (batch_size, window)).astype(np.int32)

with tempfile.TemporaryDirectory() as run_dir:
    for _ in range(3):  # tracing, and the generator's compile or cache load
        float(train_step(features, targets))
    samples.write_step_samples(model, wavenet, run_dir, 0, seconds=0.05, **keys)
    train_seconds, sample_seconds_taken = [], []
    for k in range(rounds):
        started = time.perf_counter()
        for _ in range(steps_per_round):
            float(train_step(features, targets))
        train_seconds.append((time.perf_counter() - started) / steps_per_round)
        _, took = samples.write_step_samples(model, wavenet, run_dir, k + 1, seconds=sample_seconds, **keys)
        sample_seconds_taken.append(took)

per_step, per_sampling = float(np.median(train_seconds)), float(np.median(sample_seconds_taken))
print(json.dumps({
    "seconds_per_sampling": round(per_sampling, 3),
    "train_seconds_per_step": round(per_step, 4),
    "share_at_sample_every_100": round(per_sampling / (per_sampling + 100 * per_step), 4),
    "share_at_sample_every_1000": round(per_sampling / (per_sampling + 1000 * per_step), 4),
    "clips_per_sampling": genres, "sample_seconds": sample_seconds,
    "layers": wavenet.n_layers, "batch_size": batch_size, "window": window,
    "load_average_1min": round(os.getloadavg()[0], 2)}))
