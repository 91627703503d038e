"""The pieces of a training run: the loss, compiled train/eval steps, the run directory's files, checkpoints.

A run directory (``run_dir``) holds::

    config.json         the resolved stage-3 config            (local.config.save_config)
    model.json          what a generator needs to rebuild the model     (write_model_json / read_model_json)
    model.keras         the latest complete model, loadable with keras.models.load_model
    checkpoints/step-00000100/   model.weights.h5, optimizer.npz, state.json   (newest = highest step)
    metrics.csv         step, train_bits_per_sample, valid_bits_per_sample, samples_per_second, ...
    loss.png            train and valid curves, redrawn from metrics.csv
    tensorboard/        TensorBoard scalars

Everything is written under a temp name and renamed into place, so a killed run never leaves a file (or a
checkpoint directory) that looks complete but is not. The Spark trainer (aws/spark_training.py) writes the
same files with these same functions.
"""
import csv
import glob
import json
import math
import os
import shutil

import numpy as np

from local.config import write_json_atomic

LN2 = math.log(2.0)
METRICS_COLUMNS = ["step", "train_bits_per_sample", "valid_bits_per_sample", "samples_per_second",
                   "learning_rate", "elapsed_seconds"]
CHECKPOINT_FILES = ("model.weights.h5", "optimizer.npz", "state.json")


# --- model.json ----------------------------------------------------------------------------------------

def write_model_json(run_dir, model_settings, genres, sample_rate, quantization_channels, receptive_field,
                     data_dir):
    """Write ``run_dir/model.json`` atomically and return its path.

    model_settings  the :func:`local.wavenet.build_wavenet` kwargs (with the ``dilations`` list and ``n_genres``)
    genres          genre names, index = genre_id (from the dataset's dataset.json)
    sample_rate     Hz; quantization_channels: number of codes; receptive_field: samples
    """
    os.makedirs(run_dir, exist_ok=True)
    data = {"model": {**model_settings, "dilations": [int(d) for d in model_settings["dilations"]]},
            "genres": list(genres), "sample_rate": int(sample_rate),
            "quantization_channels": int(quantization_channels), "receptive_field": int(receptive_field),
            "data_dir": str(data_dir)}
    path = os.path.join(run_dir, "model.json")
    write_json_atomic(path, data)
    return path


def read_model_json(run_dir):
    """The dict in ``run_dir/model.json``; FileNotFoundError naming the file when there is none."""
    path = os.path.join(run_dir, "model.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {run_dir!r} is not a trained run directory "
                                f"(train one with run_model_training.py --run_dir={run_dir})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resume_conflict(run_dir, settings, shown_as=None):
    """Why ``run_dir`` cannot be resumed with the model ``settings`` (one line), or "" when it can.

    Only a run that has a checkpoint is compared: one killed before its first checkpoint starts afresh.
    ``shown_as`` names the run in the message (a URI whose local copy ``run_dir`` is).
    """
    if not latest_checkpoint(run_dir) or not os.path.isfile(os.path.join(run_dir, "model.json")):
        return ""
    differences = model_differences(read_model_json(run_dir)["model"], settings)
    if not differences:
        return ""
    name = shown_as or run_dir
    return (f"run_dir={name!r} holds a different model ({'; '.join(differences)}): "
            f"use another --run_dir or the saved model settings (see {name}/config.json)")


def model_differences(saved_settings, settings):
    """The model keys whose values differ between two build_wavenet settings dicts, as 'key: old -> new'."""
    keys = sorted(set(saved_settings) | set(settings))
    return [f"{k}: {saved_settings.get(k)!r} -> {settings.get(k)!r}" for k in keys
            if saved_settings.get(k) != settings.get(k)]


# --- metrics.csv and loss.png --------------------------------------------------------------------------

def metrics_path(run_dir):
    return os.path.join(run_dir, "metrics.csv")


def read_metrics(run_dir):
    """The rows of ``run_dir/metrics.csv`` as a list of dicts of floats (step as int); [] when there is none.

    Empty cells (e.g. no validation at that step) read as NaN.
    """
    path = metrics_path(run_dir)
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parsed = {k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items() if k}
            parsed["step"] = int(parsed["step"])
            rows.append(parsed)
    return rows


def write_metrics(run_dir, rows):
    """Rewrite ``run_dir/metrics.csv`` from a list of row dicts (temp file + rename)."""
    path = metrics_path(run_dir)
    present = {k for r in rows for k in r}
    wavenet = not rows or bool(present & {"train_bits_per_sample", "valid_bits_per_sample"})
    # a tagger run's rows have no bits columns: its file has only the columns its rows have
    columns = [c for c in METRICS_COLUMNS if wavenet or c in present] + sorted(present - set(METRICS_COLUMNS))
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    os.replace(tmp, path)
    return path


def _cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def append_metrics(run_dir, row):
    """Append one row (a dict with at least ``step``; missing columns stay empty) to ``run_dir/metrics.csv``."""
    rows = read_metrics(run_dir)
    rows.append(row)
    return write_metrics(run_dir, rows)


def truncate_metrics(run_dir, last_step):
    """Drop the rows after ``last_step`` (the steps a resumed run will redo), so the file stays continuous."""
    rows = read_metrics(run_dir)
    kept = [r for r in rows if r["step"] <= last_step]
    if len(kept) != len(rows):
        write_metrics(run_dir, kept)
    return kept


def plot_metrics(run_dir, baseline_bits=None):
    """Redraw ``run_dir/loss.png`` (train and valid bits/sample per step) from metrics.csv; return its path."""
    from local.plots import plot_loss
    rows = read_metrics(run_dir)
    train = [(r["step"], r["train_bits_per_sample"]) for r in rows if not math.isnan(r["train_bits_per_sample"])]
    valid = [(r["step"], r["valid_bits_per_sample"]) for r in rows if not math.isnan(r["valid_bits_per_sample"])]
    return plot_loss([s for s, _ in train], [b for _, b in train], [s for s, _ in valid], [b for _, b in valid],
                     os.path.join(run_dir, "loss.png"), baseline_bits=baseline_bits)


# --- the loss and the compiled steps -------------------------------------------------------------------

def window_loss(targets, logits, window):
    """Mean sparse categorical cross-entropy in nats over the last ``window`` positions.

    targets (B, window) int32; logits (B, T, Q) with T >= window. Returns a scalar tensor (nats/sample);
    divide by ln 2 (:data:`LN2`) for bits/sample.
    """
    import tensorflow as tf
    logits = logits[:, -window:, :]
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))


def model_inputs(model, features):
    """The model's inputs from a batch dict: ``codes``, plus ``genre_id`` when the model is conditioned."""
    names = [t.name for t in model.inputs]
    if "genre_id" in names:
        return [features["codes"], features["genre_id"]]
    return [features["codes"]]  # a list, as the functional model's inputs are


def make_optimizer(learning_rate, grad_clip=1.0):
    """Adam, clipping the global gradient norm at ``grad_clip`` (0 = no clipping)."""
    import keras
    return keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=grad_clip or None)


def make_train_step(model, optimizer, window, jit_compile=False):
    """A compiled ``step(features, targets) -> loss in nats``: one Adam update on the window loss."""
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def train_step(features, targets):
        with tf.GradientTape() as tape:
            logits = model(model_inputs(model, features), training=True)
            loss = window_loss(targets, logits, window)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return train_step


def make_eval_step(model, window):
    """A compiled ``step(features, targets) -> summed loss in nats over the batch's targets``."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def eval_step(features, targets):
        logits = model(model_inputs(model, features), training=False)[:, -window:, :]
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))

    return eval_step


def evaluate_bits(eval_step, valid_set, batch_size):
    """Mean loss in bits/sample of ``valid_set`` ((features dict, targets) numpy arrays), in batches."""
    features, targets = valid_set
    total = 0.0
    for first in range(0, len(targets), batch_size):
        part = {k: v[first:first + batch_size] for k, v in features.items()}
        total += float(eval_step(part, targets[first:first + batch_size]))
    return total / targets.size / LN2


def learning_rate_at(step, learning_rate, schedule="constant", warmup_steps=0, total_steps=1,
                     min_learning_rate=0.0):
    """The learning rate for ``step`` (0-based): linear warmup over ``warmup_steps``, then ``constant`` or
    ``cosine`` decay to ``min_learning_rate`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_learning_rate + 0.5 * (learning_rate - min_learning_rate) * (1 + math.cos(math.pi * progress))
    return learning_rate


# --- checkpoints ---------------------------------------------------------------------------------------

def checkpoints_dir(run_dir):
    return os.path.join(run_dir, "checkpoints")


def checkpoint_name(step):
    return f"step-{int(step):08d}"


def list_checkpoints(run_dir):
    """The complete checkpoints of a run, oldest first: a list of (step, path).

    Only directories named ``step-NNNNNNNN`` holding every file of :data:`CHECKPOINT_FILES` count; a
    checkpoint is renamed to that name only once all its files are written and synced.
    """
    found = []
    for path in glob.glob(os.path.join(checkpoints_dir(run_dir), "step-*")):
        name = os.path.basename(path)
        if name[5:].isdigit() and all(os.path.isfile(os.path.join(path, f)) for f in CHECKPOINT_FILES):
            found.append((int(name[5:]), path))
    return sorted(found)


def latest_checkpoint(run_dir):
    """(step, path) of the newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def remove_stale_temps(run_dir):
    """Delete what a killed run left half-written (temp checkpoint dirs and temp files); never trusted anyway."""
    for path in glob.glob(os.path.join(checkpoints_dir(run_dir), ".tmp-*")):
        shutil.rmtree(path, ignore_errors=True)
    for path in glob.glob(os.path.join(run_dir, "*.tmp-*")) + glob.glob(os.path.join(run_dir, ".tmp-*")):
        if os.path.isfile(path):
            os.remove(path)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def optimizer_arrays(optimizer):
    """The optimizer's state (iterations, Adam moments, ...) as a list of numpy arrays, in variable order."""
    return [np.asarray(v.numpy()) for v in optimizer.variables]


def save_checkpoint(run_dir, step, model, optimizer, state, keep=3):
    """Write checkpoint ``step`` atomically: weights, optimizer state and ``state`` (a JSON-able dict).

    Files go to ``checkpoints/.tmp-step-N-PID/``, are synced, then the directory is renamed to
    ``checkpoints/step-N``; then all but the newest ``keep`` checkpoints are deleted. Returns its path.
    """
    directory = checkpoints_dir(run_dir)
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, checkpoint_name(step))
    tmp = os.path.join(directory, f".tmp-{checkpoint_name(step)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_weights(os.path.join(tmp, "model.weights.h5"))
    arrays = optimizer_arrays(optimizer)
    with open(os.path.join(tmp, "optimizer.npz"), "wb") as f:
        np.savez(f, *arrays)
    for name in ("model.weights.h5", "optimizer.npz"):
        with open(os.path.join(tmp, name), "rb") as f:
            os.fsync(f.fileno())
    write_json_atomic(os.path.join(tmp, "state.json"), {**state, "step": int(step)})  # last: marks it complete
    _fsync_dir(tmp)
    if os.path.isdir(final):  # the same step saved again (e.g. a resumed run): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(directory)
    for _, old in list_checkpoints(run_dir)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path, model, optimizer):
    """Restore weights and optimizer state from a checkpoint directory; return its state dict.

    The optimizer is built on the model's trainable variables first; a checkpoint whose arrays do not
    match the model (another architecture) raises ValueError.
    """
    model.load_weights(os.path.join(path, "model.weights.h5"))
    optimizer.build(model.trainable_variables)
    with np.load(os.path.join(path, "optimizer.npz")) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    variables = optimizer.variables
    if len(arrays) != len(variables) or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise ValueError(f"{path}: the optimizer state does not match this model")
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
        return json.load(f)


def save_model(model, run_dir, name="model.keras"):
    """Save the full model to ``run_dir/name`` through a temp file and a rename; return the path."""
    path = os.path.join(run_dir, name)
    tmp = os.path.join(run_dir, f".tmp-{os.getpid()}-{name}")
    model.save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
