"""Benchmark stage 3: how fast is a train step by each formulation, does the Parquet-fed input pipeline keep
it busy, and is memory flat?

Formulations (issue 11), side by side on the demo model and on the default model (stage 3's config defaults),
both at `batch_size` x `window`, one Adam step with the window loss: today's layers (Keras' dilated Conv1D,
plain tf.function, TensorFlow's own threading), the shifted-matmul dilated conv
(local.model.shifted_conv.dilated_conv_class), each again with XLA (jit_compile), `split` = today's layers with
the batch split into one part per core, each op on one thread (loop.use_threads: what run_model_training.py runs
now), and Keras 3 on the JAX backend with jax.jit (each formulation; null when jax is not installed). The
TensorFlow ones alternate in one process (`formulation_rounds` rounds, best round kept: the machine may be
shared); `split` needs its own thread pools, so its process and today's take turns, twice each, the best kept;
JAX runs in its own process (Keras picks its backend at import). GFLOP/s = model FLOPs of a training sample (3x the forward pass's
multiply-adds x 2 over the positions computed) x samples/s, against the float32 1024x1024 matmul rate (numpy's or TensorFlow's, the higher).

Builds two synthetic processed datasets (real Parquet parts, like stage 2 writes): a small one of
`tracks` tracks and one 10x larger. For each, a fresh process trains the same model with the real
pipeline (TrainStream -> tf.data with prefetch -> compiled train step) and, alternating with it in the
same process, on one constant in-memory batch, so the two rates are measured side by side on the same
busy machine. Peak RSS is the process's maximum resident memory over the whole measurement.

Run:
  .venv/bin/python bench/bench_training.py                    # the demo model (make demo's), ~5-6 min
  .venv/bin/python bench/bench_training.py --pipeline=false   # only the formulations (~3 min)
  .venv/bin/python bench/bench_training.py --layers_per_stack=10 --stacks=2 --skip_channels=128 --batch_size=8

Prints one JSON line: steps_per_second_fed, steps_per_second_in_memory, pipeline_efficiency (fed / in
memory; goal >= 0.95), peak_rss_mb_small, peak_rss_mb_10x, rss_growth (10x / small - 1; goal <= 0.10),
plus the same rates on the 10x dataset and the settings; and per model (`demo_model`, `default_model`) and
approach `samples_per_second_<approach>_<model>`, `speedup_<approach>_<model>` (over today's layers),
`gflops_<approach>_<model>`, and `speedup_demo_model` / `speedup_default_model` /
`matmul_peak_fraction_demo_model` / `matmul_peak_fraction_default_model` for the step run_model_training.py
uses (`split`), `fastest_<model>` (approach, ratio),
`matmul_gflops` (the higher of `matmul_gflops_numpy` and `matmul_gflops_tensorflow`: the peak the fractions
divide by), `cpu` and its vector extensions, `load_average_1min`.

The context stack (issue 18; `context_stack=true`): the demo model's train step (run_model_training.py's split
step, in-memory batches of each model's own window length) without and with a context stack of
`context_layers` layers on frames of `context_rate` samples, alternating in one process, the best round each:
`context_stack_cost_ratio` = samples/s without / with (goal <= 1.25), `samples_per_second_without_context`,
`samples_per_second_with_context`, `context_seconds` (the whole model's receptive field), `context_past`.
The renderer (issue 28) in the same rounds: the demo model locally conditioned on a plan of `plan_bands` bands
every `plan_hop` samples: `plan_cost_ratio` = samples/s without / with the plan (goal <= 1.25; the plan frames
are part of each batch, as the window reader builds them), `samples_per_second_with_plan`; and the plan's cost
computed on the fly: `plan_ms_per_window` (plan_frames on a window's share of a 30 s track, once per cached
track) against storing it: `plan_dataset_size_ratio` (dataset bytes with a float16 plan column / without).
  .venv/bin/python bench/bench_training.py --pipeline=false --formulations=false   # only that (~2 min)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from local.core.config import configure

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
pipeline = True  # measure the Parquet-fed pipeline and memory (the two synthetic datasets)
formulations = True  # measure the train step's formulations (demo and default model)
formulation_rounds = 3  # alternating rounds per formulation, the best kept
formulation_steps = 2  # timed steps per round
context_stack = True  # measure the context stack's cost (context_stack_cost_ratio)
context_rate = 256  # its frames, samples (the demo's context stack)
context_layers = 6  # its layers: dilations 1..2**(context_layers-1) frames (6 x 256 at 16 kHz: 1.1 s in all)
context_channels = 32  # its channels
context_rounds = 4  # alternating rounds without / with the context stack (and the plan), the best kept
plan_bands = 80  # the renderer measured beside them (plan_cost_ratio; docs/plan.md): log-mel bands
plan_hop = 256  # samples per plan frame
dataset_dir = ""  # where the synthetic datasets go (empty = a temp folder, removed afterwards)
measure = ""  # internal: the dataset a child process measures
measure_backend = ""  # internal: tensorflow | tensorflow_split | jax, the formulations a child process measures

config = configure(globals())
# -----------------------------------------------------------------------------


def make_dataset(directory, n_tracks, seed):
    """A processed dataset of synthetic music-like tracks (sum of tones + noise, mu-law coded)."""
    import librosa
    import numpy as np

    from local.core.fileio import write_json_atomic
    from local.store import dataset_files
    rng = np.random.default_rng(seed)
    writer = dataset_files.PartWriter(directory, rows_per_part=64)
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
    index = dataset_files.read_index(directory)
    write_json_atomic(os.path.join(directory, "dataset.json"),
                      dataset_files.summarize(index, sample_rate, 256, genres))


def measure_dataset(directory):
    """Train on ``directory`` fed and in memory, alternating; return rates and this process's peak RSS."""
    import resource
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from local.dataset import windows
    from local.model.wavenet import WaveNetConfig, build_wavenet
    from local.store import dataset_files
    from local.train import loop, wavenet_task
    wavenet = WaveNetConfig.from_config({"layers_per_stack": layers_per_stack, "stacks": stacks,
                                         "filter_width": filter_width, "residual_channels": residual_channels,
                                         "dilation_channels": dilation_channels, "skip_channels": skip_channels,
                                         "genre_conditioning": genre_conditioning}, n_genres=3)
    field = wavenet.receptive_field
    index = dataset_files.read_index(directory)
    keras.utils.set_random_seed(seed)
    model = build_wavenet(wavenet)
    optimizer = loop.make_optimizer(1e-3)
    train_step = wavenet_task.make_train_step(model, wavenet, optimizer, window)
    stream = windows.TrainStream(windows.split_tracks(index, "train"), field, window, batch_size, seed=seed,
                                 cache_tracks=cache_tracks)
    fed = iter(windows.to_tf_dataset(stream, 0, prefetch_batches))
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


MODELS = {  # name -> WaveNetConfig fields besides the bench's channels (both at batch_size x window)
    "demo_model": dict(dilations=[2 ** i for i in range(10)], skip_channels=64),  # make demo's
    "default_model": dict(dilations=[2 ** i for i in range(10)] * 2, skip_channels=128),  # stage 3's defaults
}
APPROACHES = {"tensorflow": [("today", "keras", False), ("shifted", "shifted", False), ("today_xla", "keras", True),
                             ("shifted_xla", "shifted", True)],
              "tensorflow_split": [("split", "keras", False)],
              "jax": [("jax", "keras", None), ("jax_shifted", "shifted", None)]}
CHOSEN = "split"  # the step run_model_training.py runs: today's layers, the batch split into one part per core


def model_config(settings):
    """The WaveNetConfig of one of MODELS (genre-conditioned on 3 genres, the bench's channels)."""
    from local.model.wavenet import WaveNetConfig
    return WaveNetConfig(filter_width=filter_width, residual_channels=residual_channels,
                         dilation_channels=dilation_channels, genre_conditioning=True, n_genres=3, **settings)


def model_flops_per_sample(settings, window):
    """FLOPs of one training sample: 3 x (2 x multiply-adds of the forward pass) over the receptive field +
    window - 1 positions computed for `window` targets (the backward pass costs about twice the forward)."""
    from local.model.wavenet import receptive_field
    dilations = settings["dilations"]
    r, d, s, q = residual_channels, dilation_channels, settings["skip_channels"], 256
    per_position = len(dilations) * (filter_width * r * 2 * d + d * s + d * r) - d * r + s * s + s * q
    positions = receptive_field(dilations, filter_width) + window - 1
    return 3 * 2 * per_position * positions / window


def batch_for(settings, rng):
    """One (codes (B, T) int32, genre_id (B,) int32, targets (B, window) int32) batch of random codes."""
    import numpy as np

    from local.model.wavenet import receptive_field
    positions = receptive_field(settings["dilations"], filter_width) + window - 1
    return (rng.integers(0, 256, (batch_size, positions)).astype(np.int32),
            (np.arange(batch_size) % 3).astype(np.int32), rng.integers(0, 256, (batch_size, window)).astype(np.int32))


def tensorflow_steps(settings, batch):
    """{approach: a callable running one train step} on the TensorFlow backend (run_model_training.py's step)."""
    import keras
    import tensorflow as tf

    from local.model.wavenet import build_wavenet
    from local.train import loop, wavenet_task
    features = {"codes": tf.constant(batch[0]), "genre_id": tf.constant(batch[1])}
    targets = tf.constant(batch[2])
    steps = {}
    for name, formulation, jit in APPROACHES[measure_backend]:
        keras.utils.set_random_seed(seed)
        wavenet = model_config(settings)
        model = build_wavenet(wavenet, formulation=formulation)
        step = wavenet_task.make_train_step(model, wavenet, loop.make_optimizer(1e-3), window, jit_compile=jit,
                                        parts=PARTS[0])
        steps[name] = lambda step=step: float(step(features, targets))
    return steps


def jax_steps(settings, batch):
    """{approach: one jitted train step} on Keras' JAX backend: the same model, loss and Adam (stateless)."""
    import jax
    import jax.numpy as jnp
    import keras

    from local.model.wavenet import build_wavenet
    steps = {}
    inputs = [jnp.asarray(batch[0]), jnp.asarray(batch[1])]
    targets = jnp.asarray(batch[2])
    for name, formulation, _ in APPROACHES["jax"]:
        keras.utils.set_random_seed(seed)
        model = build_wavenet(model_config(settings), formulation=formulation)
        optimizer = keras.optimizers.Adam(1e-3, global_clipnorm=1.0)
        optimizer.build(model.trainable_variables)

        def loss_of(trainable, non_trainable, model=model):
            logits, non_trainable = model.stateless_call(trainable, non_trainable, inputs, training=True)
            logits = logits[:, -window:, :]
            picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
            return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked), non_trainable

        @jax.jit
        def train_step(trainable, non_trainable, optimizer_state, loss_of=loss_of, optimizer=optimizer):
            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable, non_trainable)
            trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
            return loss, trainable, non_trainable, optimizer_state

        state = [[v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                 [v.value for v in optimizer.variables]]

        def run(state=state, train_step=train_step):
            loss, *state[:] = train_step(*state)
            return float(loss)

        steps[name] = run
    return steps


PARTS = [1]  # batch parts of the TensorFlow steps: one per core in the tensorflow_split child


def measure_formulations(backend):
    """{model: {approach: samples/s}}: each approach's steps timed in alternating rounds, the best round kept.
    The tensorflow_split child first sets TensorFlow's thread pools (one thread per op, one op per core:
    loop.use_threads), which only a fresh process can."""
    import numpy as np
    if backend == "tensorflow_split":
        from local.train import loop
        PARTS[0] = min(loop.use_threads(0), batch_size)
    rng = np.random.default_rng(seed)
    results = {}
    for model_name, settings in MODELS.items():
        steps = (jax_steps if backend == "jax" else tensorflow_steps)(settings, batch_for(settings, rng))
        for run in steps.values():  # trace / compile, then warm up
            run()
            run()
        best = dict.fromkeys(steps, 0.0)
        for _ in range(formulation_rounds):
            for name, run in steps.items():
                started = time.perf_counter()
                for _ in range(formulation_steps):
                    run()
                best[name] = max(best[name], formulation_steps * batch_size * window /
                                 (time.perf_counter() - started))
        results[model_name] = best
    return results


def measure_context_stack():
    """{samples/s without, with the context stack, ...}: the demo model's split train step (as run_model_training.py
    runs it) on in-memory random batches, the two models alternating, the best round of each."""
    import dataclasses

    import keras
    import numpy as np
    import tensorflow as tf

    from local.model.wavenet import build_wavenet, default_dilations
    from local.train import loop, wavenet_task
    parts = min(loop.use_threads(0), batch_size)
    plain = model_config(MODELS["demo_model"])
    configs = {"without": plain, "with": dataclasses.replace(
        plain, context_rate=context_rate, context_dilations=tuple(default_dilations(1, context_layers)),
        context_channels=context_channels), "plan": dataclasses.replace(plain, plan_bands=plan_bands, plan_hop=plan_hop)}
    rng = np.random.default_rng(seed)
    steps = {}
    for name, wavenet in configs.items():
        keras.utils.set_random_seed(seed)
        model = build_wavenet(wavenet)
        step = wavenet_task.make_train_step(model, wavenet, loop.make_optimizer(1e-3), window, parts=parts)
        features = {"codes": tf.constant(rng.integers(0, 256, (batch_size, wavenet.window_field + window - 1)),
                                         tf.int32),
                    "genre_id": tf.constant(np.arange(batch_size) % 3, tf.int32)}
        if wavenet.has_plan:
            frames = wavenet.plan_frames_for(wavenet.window_field + window - 1 - wavenet.context_past)
            features["plan"] = tf.constant(rng.normal(-50, 15, (batch_size, frames, plan_bands)), tf.float32)
        targets = tf.constant(rng.integers(0, 256, (batch_size, window)), tf.int32)
        steps[name] = lambda step=step, features=features, targets=targets: float(step(features, targets))
        steps[name]()
        steps[name]()
    best = dict.fromkeys(steps, 0.0)
    for _ in range(context_rounds):
        for name, run in steps.items():
            started = time.perf_counter()
            for _ in range(formulation_steps):
                run()
            best[name] = max(best[name], formulation_steps * batch_size * window / (time.perf_counter() - started))
    with_context = configs["with"]
    from local.audio.plan import plan_frames
    track = rng.integers(0, 256, 30 * sample_rate).astype(np.uint8)
    plan_frames(track[:sample_rate], configs["plan"].plan_settings(sample_rate))  # librosa's first call builds its filters
    started = time.perf_counter()
    plan_frames(track, configs["plan"].plan_settings(sample_rate))
    per_window = (time.perf_counter() - started) * 1000 * window / len(track)
    return {"plan_cost_ratio": round(best["without"] / best["plan"], 3),
            "samples_per_second_with_plan": round(best["plan"]), "plan_ms_per_window": round(per_window, 4),
            "plan_dataset_size_ratio": round(1 + plan_bands * 2 / plan_hop, 3),
            "context_stack_cost_ratio": round(best["without"] / best["with"], 3),
            "samples_per_second_without_context": round(best["without"]),
            "samples_per_second_with_context": round(best["with"]),
            "context_seconds": round(with_context.total_receptive_field / sample_rate, 3),
            "context_past": with_context.context_past, "context_rate": context_rate,
            "context_dilations": list(with_context.context_dilations), "context_channels": context_channels}


def cpu_description():
    """(CPU model name, its vector extensions among AVX, AVX2, FMA, AVX-512F) from /proc/cpuinfo."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return model, [name for name, flag in (("AVX", "avx"), ("AVX2", "avx2"), ("FMA", "fma"),
                                           ("AVX-512F", "avx512f")) if flag in flags]


MATMUL_SNIPPET = """
import json, os, sys, time
import numpy as np
library = sys.argv[1]
a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
if library == "tensorflow":
    import tensorflow as tf
    a = tf.constant(a)
    product = lambda: tf.linalg.matmul(a, a).numpy()
else:
    product = lambda: a @ a
product()
best = 0.0
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    for _ in range(10):
        product()
    best = max(best, 10 * 2 * 1024 ** 3 / (time.perf_counter() - started) / 1e9)
print(json.dumps(best))
"""


def matmul_gflops(repeats=5):
    """The float32 1024x1024 matmul rate on this machine, the best of ``repeats`` (a shared machine lowers it,
    and a low peak would inflate the peak fractions), by numpy (as bench_generation.py measures it) and by
    TensorFlow (oneDNN: the library the training step runs on), each in its own process; returns
    {"numpy": GFLOP/s, "tensorflow": GFLOP/s}. numpy's OpenBLAS may pick old kernels on a CPU it does not
    know (Prescott on this Emerald Rapids: 62 GFLOP/s against 137-158 with Haswell's), so the peak is the
    higher of the two."""
    rates = {}
    for library in ("numpy", "tensorflow"):
        child = subprocess.run([sys.executable, "-c", MATMUL_SNIPPET, library, str(repeats)], capture_output=True,
                               text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        rates[library] = json.loads(child.stdout.strip().splitlines()[-1]) if child.returncode == 0 else 0.0
    return rates


def child_args():
    return [f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in config.items()
            if k not in ("measure", "measure_backend", "dataset_dir")]


def formulation_figures():
    """Measure every formulation (TensorFlow in one child process, JAX in another) and return the JSON keys."""
    import importlib.util
    load_before = os.getloadavg()[0]
    peak_before = matmul_gflops()
    rates = {}
    # today's and the split step run in separate processes (thread pools are per process): twice each, in
    # turn, the best kept, so a change of load touches both
    backends = ["tensorflow", "tensorflow_split"] * 2 + (["jax"] if importlib.util.find_spec("jax") else [])
    for backend in backends:
        env = {**os.environ, "KERAS_BACKEND": "jax" if backend == "jax" else "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
        child = subprocess.run([sys.executable, os.path.abspath(__file__), *child_args(),
                                f"--measure_backend={backend}"], capture_output=True, text=True, env=env)
        if child.returncode != 0:
            sys.exit(f"error: measuring the {backend} formulations failed:\n{child.stderr[-3000:]}")
        for model_name, by_approach in json.loads(child.stdout.strip().splitlines()[-1]).items():
            best = rates.setdefault(model_name, {})
            for name, rate in by_approach.items():
                best[name] = max(rate, best.get(name, 0.0))
        print(f"{backend}: {rates}", file=sys.stderr)
    peak_after = matmul_gflops()
    peaks = {library: max(peak_before[library], peak_after[library]) for library in peak_before}
    peak = max(peaks.values())
    cpu, extensions = cpu_description()
    figures = {}
    for model_name, settings in MODELS.items():
        flops = model_flops_per_sample(settings, window)
        today = rates[model_name]["today"]
        for name in [a for b in APPROACHES.values() for a, _, _ in b]:
            rate = rates[model_name].get(name)
            figures[f"samples_per_second_{name}_{model_name}"] = round(rate) if rate else None
            figures[f"speedup_{name}_{model_name}"] = round(rate / today, 3) if rate else None
            figures[f"gflops_{name}_{model_name}"] = round(flops * rate / 1e9, 2) if rate else None
        fastest = max(rates[model_name], key=rates[model_name].get)
        figures[f"fastest_{model_name}"] = [fastest, round(rates[model_name][fastest] / today, 3)]
        chosen = rates[model_name][CHOSEN]
        figures[f"speedup_{model_name}"] = round(chosen / today, 3)
        figures[f"matmul_peak_fraction_{model_name}"] = round(flops * chosen / 1e9 / peak, 4)
        figures[f"train_flops_per_sample_{model_name}"] = round(flops)
    return {**figures, "matmul_gflops": round(peak, 1), "matmul_gflops_numpy": round(peaks["numpy"], 1),
            "matmul_gflops_tensorflow": round(peaks["tensorflow"], 1), "cpu": cpu, "vector_extensions": extensions,
            "formulation_batch_size": batch_size, "formulation_window": window,
            "load_average_1min": round(load_before, 2)}


if measure_backend == "context":
    print(json.dumps(measure_context_stack()))
    sys.exit(0)
if measure_backend:
    print(json.dumps(measure_formulations(measure_backend)))
    sys.exit(0)
if measure:
    print(json.dumps(measure_dataset(measure)))
    sys.exit(0)

figures = formulation_figures() if formulations else {}
if context_stack:  # its own process: the split step sets TensorFlow's thread pools
    child = subprocess.run([sys.executable, os.path.abspath(__file__), *child_args(), "--measure_backend=context"],
                           capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if child.returncode != 0:
        sys.exit(f"error: measuring the context stack failed:\n{child.stderr[-3000:]}")
    figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
if not pipeline:
    print(json.dumps(figures))
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
        child = subprocess.run([sys.executable, os.path.abspath(__file__), *child_args(), f"--measure={directory}"],
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
    "residual_channels": residual_channels, "skip_channels": skip_channels, **figures,
}))
