"""Benchmark stage 4: generated samples per second, fast kernel against the naive per-sample forward pass.

The same model in the same run: the naive generator (a full Keras forward pass over the receptive field for
every sample, as the seed system did), the numba kernel with one stream, and with `streams` streams at once.
Also checks that the kernel's logits equal the full forward pass's on the sequence it generated.

Run:
  .venv/bin/python bench/bench_generation.py                     # the default model (20 layers, 32/32/128, 256)
  .venv/bin/python bench/bench_generation.py --filter_width=3 --streams=16

Prints one JSON line: naive_samples_per_second, fast_samples_per_second (one stream), speedup (their ratio;
goal >= 300), batched_samples_per_second (all streams in total, `threads` threads; goal >= 60,000 for 8),
batched_one_thread_samples_per_second, max_abs_logit_diff,
flops_per_sample, fast_gflops, matmul_gflops (numpy float32 1024x1024 on this machine, for context),
kernel_first_call_seconds (numba compile, or cache load), load_average_1min (before measuring: on a shared
machine the figures drop with the load; the fast ones are the best of `repeats` interleaved rounds),
batched_over_one_stream (batched / fast; goal >= 2 for 8 streams on any x86 CPU),
batched_one_thread_over_one_stream (the same on one thread: what batching alone gains, also where the two
"cores" are one core's hyperthreads), fast_cpu_samples_per_second, batched_one_thread_cpu_samples_per_second
and batched_one_thread_over_one_stream_cpu (the one-thread runs timed in the thread's CPU time: steadier than
wall time on a shared machine), cpu (model name), vector_extensions (of the CPU), numba_cpu and target (what
numba compiled for), kernel_vector_floats (the product kernel's vector: 16 = AVX-512, 8 = AVX2),
openblas_core (the kernels numpy's OpenBLAS picked).
The context stack (issue 18; `context_stack=true`): the same sample stack with a context stack of
`context_layers` layers on frames of `context_rate` samples (the generator advances it once per frame, numpy),
timed interleaved with the plain one: `context_stack_speed_ratio` (with / without, `streams` streams;
goal >= 0.9), `context_stack_speed_ratio_one_stream`, `context_samples_per_second` (batched),
`context_max_abs_logit_diff` (against the full forward pass over the silence-padded sequence), `context_seconds`.
The renderer (issue 28; `plan_stack=true`): the same sample stack locally conditioned on a plan of `plan_bands`
bands every `plan_hop` samples, rendered frame by frame (local/generate/rendering.py), timed interleaved with
the plain one: `plan_speed_ratio` (`streams` streams; goal >= 0.9), `plan_speed_ratio_one_stream` (goal >= 0.9),
`plan_max_abs_logit_diff` (against the full forward pass with the plan; goal < 1e-4).

Targets (`--targets`, comma-separated; each runs in its own process, the same model and seed):
  host   what numba and OpenBLAS pick for this CPU (the default)
  avx2   an AVX2-only CPU such as AMD EPYC (Zen) on any x86-64 machine: NUMBA_CPU_NAME=haswell with
         NUMBA_CPU_FEATURES listing no AVX-512 feature (NUMBA_CPU_NAME alone keeps the host's features, so
         on an AVX-512 machine it still emits zmm code), and OPENBLAS_CORETYPE=Haswell
  .venv/bin/python bench/bench_generation.py --targets=host,avx2   # one JSON line: {"host": {...}, "avx2": {...}}
"""
import json
import os
import sys
import time

from local.core.config import configure, fail

# --- model (defaults = stage 3's default model) ---
layers_per_stack = 10  # dilations 1..2**(layers_per_stack-1)
stacks = 2  # repeated this many times
filter_width = 2  # taps of each dilated convolution
residual_channels = 32  # channels of the residual path
dilation_channels = 32  # channels of the gated units
skip_channels = 128  # channels of the skip path
quantization_channels = 256  # codes
genre_conditioning = True  # condition on a genre (as the demo model does)
# --- measurement ---
naive_samples = 60  # samples generated the naive way (about 1 s at ~50-80/s on 2 cores)
fast_seconds = 3.0  # audio generated per fast measurement, seconds at 16 kHz
streams = 8  # streams of the batched measurement
threads = 0  # threads of the batched measurement (0 = one per core)
repeats = 3  # fast measurements repeated, the best kept (the machine is shared)
check_samples = 3000  # samples whose logits are compared with the full forward pass
seed = 0  # weights and sampling
context_stack = True  # also time the same model with a context stack (context_stack_speed_ratio)
context_rate = 256  # its frames, samples
context_layers = 6  # its layers: dilations 1..2**(context_layers-1) frames
context_channels = 32  # its channels
plan_stack = True  # also time the same model rendering a plan (plan_speed_ratio; docs/plan.md)
plan_bands = 80  # its plan: log-mel bands
plan_hop = 256  # samples per plan frame
targets = "host"  # comma-separated: host, avx2 (see above); several run one process each

config = configure(globals())
# -----------------------------------------------------------------------------

# NUMBA_CPU_NAME alone keeps the host's feature flags (numba passes them to LLVM), so the AVX2 target also
# lists its features: Haswell's, the baseline of every AVX2 CPU (AMD Zen 1-3 included).
AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,+mmx,+movbe,"
                 "+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt")
TARGET_ENVIRONMENTS = {"host": {}, "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": AVX2_FEATURES,
                                            "OPENBLAS_CORETYPE": "Haswell"}}
target_names = [name.strip() for name in targets.split(",") if name.strip()]
unknown = [name for name in target_names if name not in TARGET_ENVIRONMENTS]
if unknown or not target_names:
    fail(f"--targets={targets}: use a comma-separated list of {', '.join(TARGET_ENVIRONMENTS)}")
if len(target_names) > 1 or any(os.environ.get(k) != v for k, v in TARGET_ENVIRONMENTS[target_names[0]].items()):
    # numba and OpenBLAS read their target when they load: each target runs in a fresh process.
    import subprocess
    results = {}
    for name in target_names:
        argv = [a for a in sys.argv[1:] if not a.startswith("--targets")] + [f"--targets={name}"]
        environment = {k: v for k, v in os.environ.items() if k not in TARGET_ENVIRONMENTS["avx2"]}
        environment.update(TARGET_ENVIRONMENTS[name])
        run = subprocess.run([sys.executable, os.path.abspath(__file__), *argv], env=environment,
                             stdout=subprocess.PIPE, check=False)
        if run.returncode != 0:
            fail(f"the {name} target's run failed (exit {run.returncode}); run it alone with --targets={name}")
        results[name] = json.loads(run.stdout.decode().strip().splitlines()[-1])
    print(json.dumps(results if len(results) > 1 else results[target_names[0]]))
    sys.exit(0)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import numba
import numpy as np

from local.generate import fast as generate_fast
from local.generate import reference, simd
from local.generate import weights as generate_weights
from local.model.wavenet import WaveNetConfig, build_wavenet, default_dilations


def flops_per_sample(weights):
    """Floating-point operations (multiply and add counted apart) of one generated sample, softmax excluded."""
    n_layers, n_taps, n_gate2 = weights["conv_w"].shape
    n_res = weights["res_w"].shape[2]
    n_skip, n_q = weights["post2_w"].shape
    per_layer = n_taps * n_gate2 + (n_gate2 // 2) * (n_skip + n_res)
    macs = n_layers * per_layer - (n_gate2 // 2) * n_res + n_skip * n_skip + n_skip * n_q
    return 2 * macs


keras.utils.set_random_seed(seed)
wavenet = WaveNetConfig(dilations=default_dilations(stacks, layers_per_stack), filter_width=filter_width,
                        residual_channels=residual_channels, dilation_channels=dilation_channels,
                        skip_channels=skip_channels, quantization_channels=quantization_channels,
                        genre_conditioning=genre_conditioning, n_genres=3)
model = build_wavenet(wavenet)
rng = np.random.default_rng(seed)
for weight in model.weights:  # random biases too, and scaled so the output is not one code forever
    if len(weight.shape) == 1:
        weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
weights = generate_weights.fold_weights(model, wavenet)
field = weights["receptive_field"]


def genre_ids(n):
    return [k % 3 for k in range(n)] if genre_conditioning else None


def timed_run(n_streams, n_samples, n_threads, folded=None):
    """Total samples/s of one run of n_samples per stream: (wall time, this thread's CPU time; the second only
    means something on one thread, which runs in this thread). ``folded``: other weights (default the model's)."""
    folded = weights if folded is None else folded
    state = generate_fast.initial_state(folded, genre_ids(n_streams), n_streams=n_streams, seed=seed)
    started, started_cpu = time.perf_counter(), time.thread_time()
    generate_fast.generate(folded, state, n_samples, threads=n_threads)
    cpu_seconds, seconds = time.thread_time() - started_cpu, time.perf_counter() - started
    return n_streams * n_samples / seconds, n_streams * n_samples / max(cpu_seconds, 1e-9)


def best_rates(runs):
    """The best of `repeats` rounds of each (name, n_streams, n_samples, threads), the rounds interleaved so a
    change in the machine's load touches every figure alike: {name: (wall samples/s, CPU-time samples/s)}."""
    best = {name: (0.0, 0.0) for name, *_ in runs}
    for _ in range(repeats):
        for name, *run in runs:
            wall, cpu = timed_run(*run)
            best[name] = (max(best[name][0], wall), max(best[name][1], cpu))
    return best


started = time.perf_counter()
generate_fast.generate(weights, generate_fast.initial_state(weights, genre_ids(1), n_streams=1), 1, threads=1)
generate_fast.generate(weights, generate_fast.initial_state(weights, genre_ids(streams), n_streams=streams), 1,
                    threads=threads)
first_call = time.perf_counter() - started

load_before = os.getloadavg()[0]  # other processes' work: this machine may be shared
rates = best_rates([("fast", 1, int(fast_seconds * 16000), 1),
                    ("batched", streams, int(fast_seconds * 16000 / 2), threads),
                    ("batched_one_thread", streams, int(fast_seconds * 16000 / 2), 1)])
(fast, fast_cpu), (batched, _), (batched_one_thread, batched_one_thread_cpu) = (
    rates["fast"], rates["batched"], rates["batched_one_thread"])

# Exactness on the sequence the kernel itself sampled: its logits against the full forward pass.
state = generate_fast.initial_state(weights, genre_ids(2), n_streams=2, seed=seed)
codes, _, logits = generate_fast.generate(weights, state, check_samples, record=True)
inputs = np.concatenate([np.full((2, 1), quantization_channels // 2), codes[:, :-1]], axis=1)
ids = genre_ids(2)
full = model.predict_on_batch(wavenet.model_inputs(inputs.astype(np.int32), None if ids is None else np.int32(ids)))
max_diff = float(np.abs(logits - full).max())

# The naive way: one forward pass over the receptive field per sample (first call traces, not timed).
history = rng.integers(0, quantization_channels, field)
reference.naive_generate(model, wavenet, 1, genre_id=0 if genre_conditioning else None, history=history)
started = time.perf_counter()
reference.naive_generate(model, wavenet, naive_samples, genre_id=0 if genre_conditioning else None, history=history)
naive = naive_samples / (time.perf_counter() - started)

context_figures = {}
if context_stack:  # the same sample stack (its weights copied) with a context stack, timed interleaved
    import dataclasses
    context_config = dataclasses.replace(wavenet, context_rate=context_rate, context_channels=context_channels,
                                         context_dilations=tuple(default_dilations(1, context_layers)))
    context_model = build_wavenet(context_config)
    for weight in context_model.weights:
        weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
    for layer in model.layers:
        if layer.weights:
            context_model.get_layer(layer.name).set_weights(layer.get_weights())
    context_weights = generate_weights.fold_weights(context_model, context_config)
    n_context = int(fast_seconds * 16000 / 2)
    generate_fast.generate(context_weights, generate_fast.initial_state(context_weights, genre_ids(streams)), 1)
    best = {}
    for _ in range(repeats):
        for name, n_streams, n_threads, folded in (("plain", streams, threads, weights),
                                                   ("context", streams, threads, context_weights),
                                                   ("plain_one", 1, 1, weights), ("context_one", 1, 1, context_weights)):
            best[name] = max(best.get(name, 0.0), timed_run(n_streams, n_context // max(1, n_streams // 4), n_threads,
                                                            folded)[0])
    state = generate_fast.initial_state(context_weights, genre_ids(2), n_streams=2, seed=seed)
    codes, _, logits = generate_fast.generate(context_weights, state, 4 * context_rate + 100, record=True)
    inputs = context_config.pad_context(np.concatenate([np.full((2, 1), quantization_channels // 2), codes[:, :-1]],
                                                       axis=1))
    full = context_model.predict_on_batch(context_config.model_inputs(inputs.astype(np.int32),
                                                                      None if ids is None else np.int32(ids)))
    context_figures = {
        "context_stack_speed_ratio": round(best["context"] / best["plain"], 3),
        "context_stack_speed_ratio_one_stream": round(best["context_one"] / best["plain_one"], 3),
        "context_samples_per_second": round(best["context"]), "plain_samples_per_second_same_run": round(best["plain"]),
        "context_max_abs_logit_diff": float(np.abs(logits - full).max()),
        "context_seconds": round(context_config.total_receptive_field / 16000, 3), "context_rate": context_rate,
        "context_dilations": list(context_config.context_dilations), "context_channels": context_channels}

plan_figures = {}
if plan_stack:  # the same sample stack (its weights copied) rendering a random plan, timed interleaved
    import dataclasses

    from local.generate import rendering
    plan_config = dataclasses.replace(wavenet, plan_bands=plan_bands, plan_hop=plan_hop)
    plan_model = build_wavenet(plan_config)
    for weight in plan_model.weights:
        weight.assign(rng.normal(0.0, 0.1, weight.shape).astype("float32"))
    for layer in model.layers:
        if layer.weights:
            plan_model.get_layer(layer.name).set_weights(layer.get_weights())
    plan_weights = generate_weights.fold_weights(plan_model, plan_config)
    n_plan = int(fast_seconds * 16000 / 2)

    def plan_biases(n_streams, n_samples):
        plans = rng.normal(-50.0, 15.0, (n_streams, plan_config.plan_frames_for(n_samples), plan_bands))
        return rendering.plan_biases(plan_model, plan_config, plans.astype(np.float32))

    def timed_render(n_streams, n_samples, n_threads, biases):
        state = generate_fast.initial_state(plan_weights, genre_ids(n_streams), n_streams=n_streams, seed=seed)
        started = time.perf_counter()
        generate_fast.generate(plan_weights, state, n_samples, threads=n_threads, plan_bias=biases, plan_hop=plan_hop)
        return n_streams * n_samples / (time.perf_counter() - started)

    biases = {n: plan_biases(n, n_plan) for n in (1, streams)}
    best = {}
    for _ in range(repeats):
        best["plain"] = max(best.get("plain", 0.0), timed_run(streams, n_plan, threads)[0])
        best["plan"] = max(best.get("plan", 0.0), timed_render(streams, n_plan, threads, biases[streams]))
        best["plain_one"] = max(best.get("plain_one", 0.0), timed_run(1, n_plan, 1)[0])
        best["plan_one"] = max(best.get("plan_one", 0.0), timed_render(1, n_plan, 1, biases[1]))
    plans_in = rng.normal(-50.0, 15.0, (2, plan_config.plan_frames_for(4 * plan_hop + 100), plan_bands))
    check = rendering.plan_biases(plan_model, plan_config, plans_in.astype(np.float32))
    state = generate_fast.initial_state(plan_weights, genre_ids(2), n_streams=2, seed=seed)
    codes, _, logits = generate_fast.generate(plan_weights, state, 4 * plan_hop + 100, record=True, plan_bias=check,
                                              plan_hop=plan_hop)
    inputs = np.concatenate([np.full((2, 1), quantization_channels // 2), codes[:, :-1]], axis=1)
    full = plan_model.predict_on_batch(plan_config.model_inputs(inputs.astype(np.int32),
                                                                None if ids is None else np.int32(ids),
                                                                plans_in.astype(np.float32)))
    plan_figures = {
        "plan_speed_ratio": round(best["plan"] / best["plain"], 3),
        "plan_speed_ratio_one_stream": round(best["plan_one"] / best["plain_one"], 3),
        "plan_samples_per_second": round(best["plan"]),
        "plan_plain_samples_per_second_same_run": round(best["plain"]),
        "plan_max_abs_logit_diff": float(np.abs(logits - full).max()), "plan_bands": plan_bands, "plan_hop": plan_hop}

a = rng.standard_normal((1024, 1024)).astype(np.float32)
a @ a
started = time.perf_counter()
for _ in range(10):
    a @ a
matmul_gflops = 10 * 2 * 1024 ** 3 / (time.perf_counter() - started) / 1e9
flops = flops_per_sample(weights)
cpu, extensions = "unknown", []
if os.path.isfile("/proc/cpuinfo"):
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    cpu, cpu_flags = info.get("model name", "unknown"), set(info.get("flags", "").split())
    extensions = [name for name, flag in (("AVX", "avx"), ("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f"))
                  if flag in cpu_flags]
import llvmlite.binding

try:
    from threadpoolctl import threadpool_info
    openblas_core = ",".join(sorted({str(i.get("architecture")) for i in threadpool_info()
                                     if i.get("internal_api") == "openblas"})) or None
except ImportError:
    openblas_core = None
print(json.dumps({
    "naive_samples_per_second": round(naive, 2), "fast_samples_per_second": round(fast),
    "speedup": round(fast / naive, 1), "batched_samples_per_second": round(batched), "streams": streams,
    "batched_threads": threads or numba.get_num_threads(),
    "batched_one_thread_samples_per_second": round(batched_one_thread),
    "max_abs_logit_diff": max_diff, "flops_per_sample": flops, "fast_gflops": round(flops * fast / 1e9, 2),
    "batched_gflops": round(flops * batched / 1e9, 2), "matmul_gflops": round(matmul_gflops, 1),
    "kernel_first_call_seconds": round(first_call, 2), "receptive_field": field,
    "real_time_factor_16khz": round(fast / 16000, 2), "load_average_1min": round(load_before, 2),
    "batched_over_one_stream": round(batched / fast, 2), "cpu": cpu, "vector_extensions": extensions,
    "numba_cpu": os.environ.get("NUMBA_CPU_NAME") or llvmlite.binding.get_host_cpu_name(),
    "target": target_names[0], "kernel_vector_floats": getattr(simd, "_LANES", None), "openblas_core": openblas_core,
    "fast_cpu_samples_per_second": round(fast_cpu), "batched_one_thread_cpu_samples_per_second":
    round(batched_one_thread_cpu), "batched_one_thread_over_one_stream": round(batched_one_thread / fast, 2),
    "batched_one_thread_over_one_stream_cpu": round(batched_one_thread_cpu / fast_cpu, 2), **context_figures,
    **plan_figures,
}))
