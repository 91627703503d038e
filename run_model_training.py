"""Stage 3: train the WaveNet on the processed dataset, streaming windows of codes from its Parquet parts.

The loss is the cross-entropy of the next code at each of the last `window` positions of every example
(the positions that see a full receptive field), reported in bits per sample: 8 bits = knows nothing
(uniform over 256 codes); the unigram baseline (the codes histogram's entropy) is printed at the start.

Writes into run_dir: config.json, model.json, model.keras (latest complete model), checkpoints/,
metrics.csv, loss.png, tensorboard/.

Run:
  python run_model_training.py                                   # data/processed -> data/runs/default
  python run_model_training.py --data_dir=data/demo/processed --run_dir=data/demo/run --layers_per_stack=10 \
      --stacks=1 --skip_channels=64 --batch_size=4 --window=2000 --steps=500 --eval_every=50 \
      --checkpoint_every=250 --valid_windows=32 --genre_conditioning=true     # make demo's (~3 min, 2 cores)
  (the same command again with --steps=1000 resumes that run from its latest checkpoint up to step 1000)
  python run_model_training.py --data_dir=my/processed --max_minutes=60      # stop after an hour, whatever the step
  python run_model_training.py --help
  tensorboard --logdir data/runs

Rerunning with the same run_dir continues from its latest checkpoint; the model keys must not change.
"""
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local.config import configure, fail, save_config  # noqa: E402

# --- I/O ---
data_dir = "data/processed"  # stage 2's output (tracks/part-*.parquet + dataset.json)
run_dir = "data/runs/default"  # where model, checkpoints and metrics go; an existing run is resumed
# --- model ---
dilations = [2 ** i for i in range(10)] * 2  # dilation of each layer (two stacks of 1..512)
layers_per_stack = 0  # when > 0: dilations = 1, 2, ... 2**(layers_per_stack-1), repeated `stacks` times
stacks = 2  # stacks of dilations (used with layers_per_stack)
filter_width = 2  # taps of each dilated convolution
residual_channels = 32  # channels of the residual path
dilation_channels = 32  # channels of the gated units
skip_channels = 128  # channels of the skip path and the head
quantization_channels = 256  # number of codes; must match the dataset
genre_conditioning = False  # add a learned genre embedding into every layer (generate by genre)
genre_channels = 16  # size of that genre embedding
# --- data ---
batch_size = 8  # examples per step
window = 4000  # output samples per example (each example reads receptive_field + window - 1 codes)
cache_tracks = 8  # tracks held in memory and shuffled together (bounds peak memory)
prefetch_batches = 8  # batches prepared ahead of the training step
valid_windows = 64  # fixed validation windows drawn from the valid split
# --- optimizer ---
steps = 20000  # total training steps (a resumed run continues up to this)
max_minutes = 0.0  # stop after this many minutes of training in this invocation, whichever of it and `steps` comes first (0 = no limit)
learning_rate = 1e-3  # Adam step size (peak, after warmup)
lr_schedule = "constant"  # constant | cosine (decays to min_learning_rate at `steps`)
warmup_steps = 0  # linear learning-rate warmup, steps
min_learning_rate = 1e-5  # the cosine schedule's final value
grad_clip = 1.0  # clip the global gradient norm to this (0 = off)
# --- logging and checkpoints ---
eval_every = 250  # steps between validation losses, metrics.csv rows and loss.png
checkpoint_every = 1000  # steps between checkpoints (one is also written at the end)
keep_checkpoints = 3  # newest checkpoints kept
stuck_check_step = 1000  # warn if the train loss is still ~log2(quantization_channels) at this step (0 = off)
# --- system ---
seed = 1234  # makes a run reproducible (weights, window order)
jit_compile = False  # compile the train step with XLA (measured 2x slower on a 2-core CPU; try it on GPU)

config = configure(globals())
# -----------------------------------------------------------------------------

positive = {k: config[k] for k in ("filter_width", "residual_channels", "dilation_channels", "skip_channels",
                                   "genre_channels", "batch_size", "window", "cache_tracks", "prefetch_batches",
                                   "eval_every", "checkpoint_every", "keep_checkpoints")}
for key, value in positive.items():
    if value < 1:
        fail(f"--{key}={value}: must be at least 1")
if filter_width < 2:
    fail(f"--filter_width={filter_width}: must be at least 2 (a causal convolution needs a past tap)")
if layers_per_stack > 0:
    if stacks < 1:
        fail(f"--stacks={stacks}: must be at least 1")
    dilations = [2 ** i for i in range(layers_per_stack)] * stacks
if not dilations or any(d < 1 for d in dilations):
    fail(f"--dilations={','.join(map(str, dilations))}: need at least one layer, every dilation >= 1")
if max_minutes < 0:
    fail(f"--max_minutes={max_minutes}: must be >= 0 (0 = no limit)")
if steps < 0 or learning_rate <= 0 or grad_clip < 0 or valid_windows < 1:
    fail("steps must be >= 0, learning_rate > 0, grad_clip >= 0 and valid_windows >= 1")
if lr_schedule not in ("constant", "cosine"):
    fail(f"--lr_schedule={lr_schedule}: expected constant or cosine")

from local import dataset_store  # noqa: E402
from local.wavenet import model_settings, receptive_field  # noqa: E402

info = dataset_store.read_dataset_json(data_dir)
if info is None or not dataset_store.list_parts(data_dir):
    fail(f"data_dir={data_dir!r} holds no processed dataset (dataset.json and tracks/part-*.parquet): "
         f"run run_transformation_scripts.py first or pass --data_dir=FOLDER")
if info["quantization_channels"] != quantization_channels:
    fail(f"--quantization_channels={quantization_channels} but {data_dir}/dataset.json says "
         f"{info['quantization_channels']}: pass --quantization_channels={info['quantization_channels']}")
genres, sample_rate = list(info["genres"]), int(info["sample_rate"])
settings = model_settings({**config, "dilations": dilations}, n_genres=len(genres))
field = receptive_field(dilations, filter_width)

from local import dataset, training  # noqa: E402  (numpy, pyarrow: only once the config is good)

index = dataset_store.read_index(data_dir)
train_tracks, too_short = dataset.usable_tracks(dataset.split_tracks(index, "train"), field, window)
valid_tracks, _ = dataset.usable_tracks(dataset.split_tracks(index, "valid"), field, window)
span = field + window
if not train_tracks or not valid_tracks:
    fail(f"{data_dir}: needs train and valid tracks longer than receptive_field + window = {span} samples "
         f"({span / sample_rate:.2f} s); it has {len(train_tracks)} train and {len(valid_tracks)} valid: "
         f"add tracks or lower --window / the dilations")
if too_short:
    print(f"note: {len(too_short)} train tracks shorter than {span} samples are not used")

# Resuming: the model must be the one the checkpoints were made with (no checkpoint yet = a fresh start).
os.makedirs(run_dir, exist_ok=True)
training.remove_stale_temps(run_dir)
checkpoint = training.latest_checkpoint(run_dir)
conflict = training.resume_conflict(run_dir, settings)
if conflict:
    fail(conflict)

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from local.wavenet import build_wavenet  # noqa: E402

keras.utils.set_random_seed(seed)
model = build_wavenet(**settings)
optimizer = training.make_optimizer(learning_rate, grad_clip)
state = {"step": 0, "examples_done": 0, "best_valid_bits_per_sample": None}
if checkpoint:
    state = training.load_checkpoint(checkpoint[1], model, optimizer)
    print(f"resuming {run_dir} from step {state['step']} ({checkpoint[1]})")
training.truncate_metrics(run_dir, state["step"])  # steps after the checkpoint are redone
save_config(config, run_dir)
training.write_model_json(run_dir, settings, genres, sample_rate, quantization_channels, field, data_dir)

uniform_bits = math.log2(quantization_channels)
unigram_bits = dataset.unigram_bits(train_tracks, quantization_channels)
stream = dataset.TrainStream(train_tracks, field, window, batch_size, seed=seed, cache_tracks=cache_tracks)
batches = iter(dataset.to_tf_dataset(stream, state["examples_done"], prefetch_batches))
valid_set = dataset.validation_set(valid_tracks, field, window, valid_windows)
train_step = training.make_train_step(model, optimizer, window, jit_compile=jit_compile)
eval_step = training.make_eval_step(model, window)
writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
print(f"{model.count_params():,} parameters, receptive field {field} samples ({field / sample_rate * 1000:.0f} ms), "
      f"{len(train_tracks)} train / {len(valid_tracks)} valid tracks, {len(valid_set[1])} valid windows, "
      f"{stream.epoch_examples} examples per epoch; baselines: uniform {uniform_bits:.2f}, "
      f"unigram {unigram_bits:.2f} bits/sample")

step, losses = state["step"], []
if step >= steps:
    print(f"{run_dir} is already trained to step {step}; pass a larger --steps to continue")
progress = tqdm(total=steps, initial=step, unit="step", dynamic_ncols=True, disable=step >= steps)
interval_start = time.perf_counter()
started = interval_start - state.get("elapsed_seconds", 0.0)  # elapsed time counts across resumes
deadline = interval_start + 60 * max_minutes if max_minutes > 0 else math.inf  # this invocation's time budget
out_of_time = False
while step < steps:
    optimizer.learning_rate.assign(training.learning_rate_at(step, learning_rate, lr_schedule, warmup_steps,
                                                             steps, min_learning_rate))
    try:
        features, targets = next(batches)
    except tf.errors.OpError as e:  # the input thread failed: say why in one line
        progress.close()
        fail(f"reading {data_dir} failed: {e.message.strip().splitlines()[-1]}", status=1)
    loss = float(train_step(features, targets))
    if not math.isfinite(loss):
        progress.close()
        last = training.latest_checkpoint(run_dir)
        fail(f"the loss became {loss} at step {step + 1}; stopped. The last good checkpoint is "
             f"{last[1] if last else 'none'}: rerun with a lower --learning_rate or --grad_clip", status=1)
    losses.append(loss / training.LN2)
    step += 1
    state["examples_done"] += batch_size
    progress.update(1)
    out_of_time = time.perf_counter() >= deadline  # then this step is the last: evaluated and checkpointed
    if step % eval_every == 0 or step == steps or out_of_time:
        seconds = time.perf_counter() - interval_start
        samples_per_second = len(losses) * batch_size * window / max(seconds, 1e-9)
        train_bits = float(np.mean(losses))
        valid_bits = training.evaluate_bits(eval_step, valid_set, batch_size)
        if state["best_valid_bits_per_sample"] is None or valid_bits < state["best_valid_bits_per_sample"]:
            state["best_valid_bits_per_sample"] = valid_bits
        current_lr = float(optimizer.learning_rate.numpy())
        training.append_metrics(run_dir, {"step": step, "train_bits_per_sample": train_bits,
                                          "valid_bits_per_sample": valid_bits,
                                          "samples_per_second": samples_per_second, "learning_rate": current_lr,
                                          "elapsed_seconds": time.perf_counter() - started})
        training.plot_metrics(run_dir, baseline_bits=uniform_bits)
        with writer.as_default(step=step):
            tf.summary.scalar("train_bits_per_sample", train_bits)
            tf.summary.scalar("valid_bits_per_sample", valid_bits)
            tf.summary.scalar("samples_per_second", samples_per_second)
            tf.summary.scalar("learning_rate", current_lr)
        writer.flush()
        progress.set_postfix(train=f"{train_bits:.3f}", valid=f"{valid_bits:.3f}",
                             samples_s=f"{samples_per_second:,.0f}")
        progress.write(f"step {step}: train {train_bits:.3f} valid {valid_bits:.3f} bits/sample, "
                       f"{samples_per_second:,.0f} samples/s")
        if stuck_check_step and step - len(losses) < stuck_check_step <= step and train_bits > uniform_bits - 0.1:
            progress.write(f"warning: the train loss is still {train_bits:.2f} bits/sample at step {step}, about "
                           f"log2({quantization_channels}) = {uniform_bits:.2f}: the model predicts nothing yet "
                           f"(check the data, try a lower --learning_rate)")
        losses, interval_start = [], time.perf_counter()
    if step % checkpoint_every == 0 or step == steps or out_of_time:
        saved_at = time.perf_counter()
        training.save_checkpoint(run_dir, step, model, optimizer,
                                 {"examples_done": state["examples_done"],
                                  "best_valid_bits_per_sample": state["best_valid_bits_per_sample"],
                                  "elapsed_seconds": time.perf_counter() - started, "seed": seed,
                                  "config": config}, keep=keep_checkpoints)
        training.save_model(model, run_dir)
        interval_start += time.perf_counter() - saved_at  # checkpoint time is not training throughput
    if out_of_time:
        break
progress.close()
if out_of_time:
    print(f"stopped at step {step} of {steps}: --max_minutes={max_minutes:g} reached (checkpoint, metrics row and "
          f"model.keras written; rerun to continue)")
if not os.path.isfile(os.path.join(run_dir, "model.keras")):
    training.save_model(model, run_dir)
rows = training.read_metrics(run_dir)
last = rows[-1] if rows else None
if last:
    print(f"done: step {last['step']}, train {last['train_bits_per_sample']:.3f}, "
          f"valid {last['valid_bits_per_sample']:.3f} bits/sample (unigram {unigram_bits:.2f}, "
          f"uniform {uniform_bits:.2f}) -> {run_dir}")
