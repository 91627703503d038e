"""Stage 3's work, shared by both trainers: config checks, the run directory's files, checkpoints, the loop.

A run directory (``run_dir``) holds::

    config.json         the resolved stage-3 config            (local.config.save_config)
    model.json          what a generator needs to rebuild the model     (write_model_json / read_run_model)
    model.keras         the latest complete model, loadable with keras.models.load_model
    checkpoints/step-00000100/   model.weights.h5, optimizer.npz, state.json   (newest = highest step)
    metrics.csv         step, train_bits_per_sample, valid_bits_per_sample, samples_per_second, ... (+ extra columns)
    loss.png            train and valid curves, redrawn from metrics.csv
    tensorboard/        TensorBoard scalars (every numeric metrics column)
    samples/step-500/   clips sampled while training (local/samples.py), report.html the run's page (local/report.py)

Everything is written with local/fileio.py, so a killed run never leaves a file (or a checkpoint directory)
that looks complete but is not. This module owns the formats of state.json and metrics.csv:
``run_model_training.py`` (through :func:`train`) and ``aws/spark_training.py`` (its own Elephas epochs)
call the same functions: :func:`check_config`, :func:`check_dataset`, :func:`usable_splits`,
:func:`open_run_dir`, :func:`resume`, :func:`write_run_files`, :func:`record_evaluation`,
:func:`save_progress`, :func:`done_line`.

The laptop loop, :func:`train`, knows nothing of the WaveNet: a model kind hands it a :class:`Task`
(:func:`wavenet_task` is the WaveNet's; a tagger makes its own), and callbacks (``on_evaluate``) may act at
every evaluation and add metrics columns.
"""
import csv
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import time

import numpy as np

from local import fileio, samples
from local.config import ConfigError, StageError, check_choices, check_minimums
from local.fileio import write_json_atomic
from local.wavenet import WaveNetConfig

LN2 = math.log(2.0)
MODEL_KINDS = ("wavenet", "tagger")  # the ``model`` key: what a run directory holds (model.json ``kind``)
METRICS_COLUMNS = ["step", "train_bits_per_sample", "valid_bits_per_sample", "samples_per_second",
                   "learning_rate", "elapsed_seconds"]
CHECKPOINT_FILES = ("model.weights.h5", "optimizer.npz", "state.json")
# The least value of each training key either trainer has (a key a trainer lacks is not checked).
TRAINING_MINIMUMS = {"batch_size": 1, "window": 1, "valid_windows": 1, "keep_checkpoints": 1, "cache_tracks": 1,
                     "prefetch_batches": 1, "eval_every": 1, "checkpoint_every": 1, "steps": 0, "epochs": 1,
                     "warmup_steps": 0, "grad_clip": 0, "min_learning_rate": 0, "stuck_check_step": 0,
                     "max_minutes": 0}


# --- config and dataset checks (both trainers) ---------------------------------------------------------

def resolve_config(namespace, argv=None):
    """A trainer's resolved config: its config block (``globals()``, left as written) overridden from
    ``--config`` and ``argv`` (local.config.configure), then :func:`check_config`."""
    from local.config import configure
    config = configure(dict(namespace), argv)
    check_config(config)
    return config


def check_config(config):
    """Check the stage-3 keys ``config`` has, the model keys included, before any data is read.

    Raises :class:`local.config.ConfigError` naming one key and what it accepts.
    """
    check_minimums(config, TRAINING_MINIMUMS)
    if "learning_rate" in config and not config["learning_rate"] > 0:
        raise ConfigError(f"--learning_rate={config['learning_rate']}: must be > 0")
    check_choices(config, {"lr_schedule": ("constant", "cosine"), "model": MODEL_KINDS})
    from local import checks
    if checks.shared_folder_problem(config, "run_dir", "data_dir"):
        raise ConfigError(checks.shared_folder_problem(config, "run_dir", "data_dir"))
    samples.check_config(config)
    WaveNetConfig.from_config(config)
    if config.get("model") == "tagger":
        from local.tagger import check_config as check_tagger_config
        check_tagger_config(config)


def check_dataset(info, data_dir, quantization_channels, stage2="run_transformation_scripts.py"):
    """The (genres, sample_rate) of a dataset, from its ``dataset.json`` dict ``info`` (None: no dataset).

    Raises StageError (one line naming ``data_dir`` or ``quantization_channels``) when there is no dataset
    or its codes have another number of levels. ``stage2`` names the command that makes one.
    """
    if info is None:
        raise StageError(f"data_dir={data_dir!r} holds no processed dataset (dataset.json and "
                         f"tracks/part-*.parquet): run {stage2} first or pass --data_dir=FOLDER")
    if info["quantization_channels"] != quantization_channels:
        raise StageError(f"--quantization_channels={quantization_channels} but {data_dir}/dataset.json says "
                         f"{info['quantization_channels']}: pass --quantization_channels={info['quantization_channels']}")
    return list(info["genres"]), int(info["sample_rate"])


def usable_splits(index, receptive_field, window, data_dir, sample_rate, *,
                  length_keys="receptive_field + window", fix="lower --window / the dilations"):
    """(train rows, valid rows) of a dataset index long enough for one example (local.dataset.usable_tracks).

    Raises StageError when either split has none (a dataset of under two tracks is told that no valid split
    exists, not to lower --window); prints a note on the train tracks too short to use. ``length_keys`` and
    ``fix`` name, in that message, the keys that set an example's length (another model kind's own).
    """
    from local import checks, dataset
    problem = checks.split_problem(len(index), len(dataset.split_tracks(index, "train")),
                                   len(dataset.split_tracks(index, "valid")), data_dir)
    if problem:
        raise StageError(problem)
    train, too_short = dataset.usable_tracks(dataset.split_tracks(index, "train"), receptive_field, window)
    valid, _ = dataset.usable_tracks(dataset.split_tracks(index, "valid"), receptive_field, window)
    span = receptive_field + window
    if not train or not valid:
        raise StageError(f"{data_dir}: needs train and valid tracks longer than {length_keys} = {span} "
                         f"samples ({span / sample_rate:.2f} s); it has {len(train)} train and {len(valid)} valid: "
                         f"add tracks or {fix}")
    if too_short:
        print(f"note: {len(too_short)} train tracks shorter than {span} samples are not used")
    return train, valid


# --- model.json ----------------------------------------------------------------------------------------

def wavenet_model_json(wavenet_config, *, genres, sample_rate, data_dir):
    """The ``model.json`` dict of a WaveNet run: ``kind``, ``model`` (WaveNetConfig.to_json), genres (index = genre_id),
    sample_rate (Hz), quantization_channels, receptive_field (samples), data_dir."""
    return {"kind": "wavenet", "model": wavenet_config.to_json(), "genres": list(genres),
            "sample_rate": int(sample_rate),
            "quantization_channels": wavenet_config.quantization_channels,
            "receptive_field": wavenet_config.receptive_field, "data_dir": str(data_dir)}


def write_model_json(run_dir, model_json):
    """Write the dict ``model_json`` as ``run_dir/model.json`` atomically and return its path."""
    return write_json_atomic(os.path.join(run_dir, "model.json"), model_json)


def read_model_json(run_dir):
    """The dict in ``run_dir/model.json``; FileNotFoundError naming the file when there is none."""
    path = os.path.join(run_dir, "model.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {run_dir!r} is not a trained run directory "
                                f"(train one with run_model_training.py --run_dir={run_dir})")
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        if not isinstance(info, dict) or not isinstance(info.get("model"), dict):
            raise ValueError("not the model.json object")
    except ValueError as e:
        raise ValueError(f"{path} is damaged ({str(e).splitlines()[0][:80]}): a rerun of run_model_training.py "
                         f"with --run_dir={run_dir} and the run's settings (config.json) rewrites it") from None
    return info


def saved_run_info(run_dir):
    """``run_dir``'s model.json as a dict, or {} when it is missing or damaged (then it is written anew)."""
    try:
        return read_model_json(run_dir)
    except (ValueError, FileNotFoundError):
        return {}


def model_files_problem(run_dir):
    """One line when ``run_dir``'s model.json or model.keras cannot be read (cut by a crash, overwritten), or ""."""
    import zipfile
    try:
        read_model_json(run_dir)
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    path = os.path.join(run_dir, "model.keras")
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive: a cut or foreign file is not one
        return (f"{path} is damaged (not a complete .keras archive): rerun run_model_training.py with "
                f"--run_dir={run_dir} (it saves the model again from the newest good checkpoint)")
    return ""


def run_kind(info):
    """The kind of model a ``model.json`` dict describes (:data:`MODEL_KINDS`; runs older than the tagger
    have no ``kind``: WaveNets)."""
    return info.get("kind", "wavenet")


def read_run_model(run_dir):
    """(WaveNetConfig, model.json dict) of a WaveNet run: the one way a WaveNet's structure is read back
    (a tagger's: :func:`local.tagger.read_tagger_run`). StageError naming the kind for another kind of run."""
    info = read_model_json(run_dir)
    if run_kind(info) != "wavenet":
        raise StageError(f"run_dir={run_dir!r} is a {run_kind(info)} run, not a WaveNet (a tagger run is used with "
                         f"--audio=FILE_OR_FOLDER, --similar_to=FILE_OR_TRACK_ID, or as --judge=RUN_DIR)")
    return WaveNetConfig.from_json(info["model"]), info


def resume_conflict(run_dir, model_json, shown_as=None):
    """Why ``run_dir`` cannot be resumed with the model ``model_json`` (one line), or "" when it can.

    Only a run that has a checkpoint is compared: one killed before its first checkpoint starts afresh.
    ``shown_as`` names the run in the message (a URI whose local copy ``run_dir`` is).
    """
    if not latest_checkpoint(run_dir) or not os.path.isfile(os.path.join(run_dir, "model.json")):
        return ""
    try:
        saved = read_model_json(run_dir)
    except ValueError:
        return ""  # a damaged model.json is rewritten on resume; the checkpoints themselves are checked on load
    name = shown_as or run_dir
    if run_kind(saved) != run_kind(model_json):
        return (f"run_dir={name!r} holds a {run_kind(saved)} run, not a {run_kind(model_json)}: "
                f"use another --run_dir")
    differences = model_differences(saved["model"], model_json["model"])
    if not differences:
        return ""
    return (f"run_dir={name!r} holds a different model ({'; '.join(differences)}): "
            f"use another --run_dir or the saved model settings (see {name}/config.json)")


def model_differences(saved_settings, settings):
    """The model keys whose values differ between two ``model.json`` ``model`` dicts, as 'key: old -> new'."""
    keys = sorted(set(saved_settings) | set(settings))
    return [f"{k}: {saved_settings.get(k)!r} -> {settings.get(k)!r}" for k in keys
            if saved_settings.get(k) != settings.get(k)]


# --- the run directory (both trainers) -----------------------------------------------------------------

def open_run_dir(run_dir, model_json, shown_as=None):
    """Make ``run_dir`` ready to train ``model_json``'s model: lock it for this process (one writer per
    run_dir, :mod:`local.locks`; held until :func:`train` ends or the process exits), clear what a killed run left half-written, and
    raise StageError when it is a file or unwritable, another process trains in it, or it holds checkpoints
    of another model or of another dataset (genre ids, sample rate or codes that would change meaning)."""
    from local import checks, locks
    problem = checks.output_folder_problem(run_dir, "run_dir") if shown_as is None else ""
    if problem:
        raise StageError(problem)
    os.makedirs(run_dir, exist_ok=True)
    key = os.path.realpath(run_dir)
    if key not in RUN_DIR_LOCKS:  # a second training in this process reuses it
        try:
            RUN_DIR_LOCKS[key] = locks.acquire_lock(run_dir, "training")
        except locks.LockHeld as e:
            raise StageError(str(e)) from None
    remove_stale_temps(run_dir)
    conflict = resume_conflict(run_dir, model_json, shown_as)
    if not conflict and latest_checkpoint(run_dir):
        conflict = checks.resume_dataset_problem(saved_run_info(run_dir), model_json["genres"],
                                                 model_json["sample_rate"], model_json["quantization_channels"],
                                                 model_json["data_dir"], shown_as or run_dir)
    if conflict:
        raise StageError(conflict)


RUN_DIR_LOCKS = {}  # real path of a run_dir -> the lock this process holds on it (see open_run_dir)


def close_run_dir(run_dir):
    """Release this process's lock on ``run_dir`` (:func:`open_run_dir`): its training is over, so another
    process (or a later in-process stage: tests, sweeps) may train in it."""
    lock = RUN_DIR_LOCKS.pop(os.path.realpath(run_dir), None)
    if lock is not None:
        lock.release()


def new_state():
    """The state of a run before its first step (checkpointed as state.json, with the config and seed)."""
    return {"step": 0, "examples_done": 0, "best_valid_bits_per_sample": None, "elapsed_seconds": 0.0}


def resume(run_dir, model, optimizer, shown_as=None):
    """The run's state: from its latest checkpoint (weights and optimizer restored into ``model`` and
    ``optimizer``; a damaged newest checkpoint is reported and the previous good one used), else
    :func:`new_state`. metrics.csv keeps only the rows up to that step, and samples/ only the clips (the steps
    after it are redone)."""
    state = new_state()
    if latest_checkpoint(run_dir):
        loaded, path = load_newest_good_checkpoint(run_dir, model, optimizer)
        if loaded is None:
            raise StageError(f"no checkpoint in {checkpoints_dir(run_dir)} can be loaded: use another --run_dir")
        state.update(loaded)
        epoch = f", epoch {state['epoch']}" if "epoch" in state else ""
        print(f"resuming {shown_as or run_dir} from step {state['step']}{epoch} ({path})")
    truncate_metrics(run_dir, state["step"])
    samples.truncate_samples(run_dir, state["step"])
    return state


def write_run_files(run_dir, config, model_json):
    """Write ``config.json`` (the resolved config) and ``model.json`` into ``run_dir``."""
    from local.config import save_config
    save_config(config, run_dir)
    write_model_json(run_dir, model_json)


def tensorboard_writer(run_dir):
    """A TensorBoard summary writer on ``run_dir/tensorboard``."""
    import tensorflow as tf
    return tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))


def metrics_row(step, *, losses, samples_per_second, learning_rate, elapsed_seconds, extra=None):
    """One metrics.csv row: ``step``, the loss columns (``losses``, e.g. train/valid bits per sample), then
    samples_per_second, learning_rate, elapsed_seconds and any ``extra`` columns (e.g. epoch)."""
    return {"step": int(step), **losses, "samples_per_second": samples_per_second,
            "learning_rate": learning_rate, "elapsed_seconds": elapsed_seconds, **(extra or {})}


def record_evaluation(run_dir, row, *, writer=None, baseline_bits=None, plot=None):
    """Append ``row`` (:func:`metrics_row`) to metrics.csv, redraw loss.png (``plot``: keyword arguments of
    :func:`plot_metrics`, for another model's columns) and, with a ``writer``, add every numeric column to
    TensorBoard at the row's step. Returns the row."""
    append_metrics(run_dir, row)
    plot_metrics(run_dir, baseline_bits=baseline_bits, **(plot or {}))
    if writer is not None:
        import tensorflow as tf
        with writer.as_default(step=row["step"]):
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and value is not None:
                    tf.summary.scalar(key, value)
        writer.flush()
    return row


def save_progress(run_dir, model, optimizer, state, *, config, keep, export_model=None):
    """Checkpoint ``state`` (step ``state["step"]``) and save ``model.keras`` (``export_model``, default
    ``model``). state.json = the state, the config's seed and the config."""
    body = {k: v for k, v in state.items() if k != "step"}
    save_checkpoint(run_dir, state["step"], model, optimizer, {**body, "seed": config.get("seed"), "config": config},
                    keep=keep)
    save_model(export_model or model, run_dir)


def done_line(run_dir, baselines, shown_as=None):
    """The last line a trainer prints: the last metrics row against the ``baselines`` ({name: bits})."""
    rows = read_metrics(run_dir)
    against = ", ".join(f"{name} {bits:.2f}" for name, bits in baselines.items())
    if not rows:
        return f"done: {shown_as or run_dir} (no metrics yet; {against} bits/sample)"
    last = rows[-1]
    return (f"done: step {last['step']}, train {last['train_bits_per_sample']:.3f}, "
            f"valid {last['valid_bits_per_sample']:.3f} bits/sample ({against}) -> {shown_as or run_dir}")


def describe(model, wavenet_config, *, sample_rate, n_train, n_valid, n_valid_windows):
    """One line on what is trained: parameters, receptive field, tracks and validation windows."""
    field = wavenet_config.receptive_field
    return (f"{model.count_params():,} parameters, receptive field {field} samples "
            f"({field / sample_rate * 1000:.0f} ms), {n_train} train / {n_valid} valid tracks, "
            f"{n_valid_windows} valid windows")


# --- metrics.csv and loss.png --------------------------------------------------------------------------

def metrics_path(run_dir):
    return os.path.join(run_dir, "metrics.csv")


def read_metrics(run_dir):
    """The rows of ``run_dir/metrics.csv`` as a list of dicts of floats (step as int); [] when there is none.

    Empty cells (e.g. no validation at that step) read as NaN; a column only later rows have reads as NaN
    in the earlier ones, so files written before a column was added stay readable.
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
    """Rewrite ``run_dir/metrics.csv`` from a list of row dicts, atomically: :data:`METRICS_COLUMNS` first,
    then every other column in the order the rows first have it. Rows without the bits-per-sample columns (a
    tagger's) leave them out."""
    present = {k for row in rows for k in row}
    wavenet = not rows or bool(present & {"train_bits_per_sample", "valid_bits_per_sample"})
    columns = [c for c in METRICS_COLUMNS if wavenet or c in present]
    for row in rows:
        columns += [k for k in row if k not in columns]
    with fileio.atomic_write(metrics_path(run_dir), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in columns})
    return metrics_path(run_dir)


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


def plot_metrics(run_dir, baseline_bits=None, *, columns=("train_bits_per_sample", "valid_bits_per_sample"),
                 title="WaveNet loss", ylabel="bits per sample"):
    """Redraw ``run_dir/loss.png`` (the train and valid loss ``columns``, in bits, per step) from metrics.csv;
    return its path."""
    from local.plots import plot_loss
    rows = read_metrics(run_dir)
    nan = float("nan")
    train = [(r["step"], r.get(columns[0], nan)) for r in rows]
    valid = [(r["step"], r.get(columns[1], nan)) for r in rows]
    train, valid = ([(s, b) for s, b in pairs if not math.isnan(b)] for pairs in (train, valid))
    return plot_loss(os.path.join(run_dir, "loss.png"), steps=[s for s, _ in train], train_bits=[b for _, b in train],
                     valid_steps=[s for s, _ in valid], valid_bits=[b for _, b in valid], baseline_bits=baseline_bits,
                     title=title, ylabel=ylabel)


# --- the loss and the compiled steps -------------------------------------------------------------------

def window_loss(targets, logits, window):
    """Mean sparse categorical cross-entropy in nats over the last ``window`` positions.

    targets (B, window) int32; logits (B, T, Q) with T >= window. Returns a scalar tensor (nats/sample);
    divide by ln 2 (:data:`LN2`) for bits/sample.
    """
    import tensorflow as tf
    logits = logits[:, -window:, :]
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))


def make_optimizer(learning_rate, grad_clip=1.0):
    """Adam, clipping the global gradient norm at ``grad_clip`` (0 = no clipping)."""
    import keras
    return keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=grad_clip or None)


def cpu_cores():
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_threads(threads=0):
    """Run TensorFlow ops on one thread each, with ``threads`` of them side by side (0 = one per core); returns
    how many batch parts :func:`gradient_step` should split a step into (its ``parts``).

    Why: on 2 cores TensorFlow's own threading, each op split over both cores, reached 1.5x one thread on the
    demo model's step; one half-batch per core reached 1.97x (55k -> 72k samples/s on this Xeon, idle; the
    default model 23k -> 27k). Thread pools are fixed once TensorFlow has started: later calls in the same
    process (tests, sweeps) keep the first setting, and the split still applies."""
    import tensorflow as tf
    threads = int(threads) or cpu_cores()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1 if threads > 1 else threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already started in this process
        pass
    return threads


def gradient_step(model, optimizer, loss_of, jit_compile=False, parts=1):
    """A compiled ``step(features, targets) -> loss``: one optimizer update of ``model`` on
    ``loss_of(features, targets)`` (a scalar tensor computed with ``model(..., training=True)``, the mean over
    the batch). Every model kind trains through this one step.

    ``parts`` > 1 splits the batch (axis 0 of ``targets`` and of every tensor in ``features``) into that many
    parts whose losses and gradients are computed side by side (one thread each, see :func:`use_threads`) and
    averaged, weighted by their sizes: the same update as the whole batch's, to float rounding."""
    import tensorflow as tf

    def loss_and_gradients(features, targets):
        with tf.GradientTape() as tape:
            loss = loss_of(features, targets)
        return loss, [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                      for g in tape.gradient(loss, model.trainable_variables)]

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def train_step(features, targets):
        if parts <= 1:
            loss, gradients = loss_and_gradients(features, targets)
        else:
            size = tf.shape(targets)[0]
            bounds = [size * k // parts for k in range(parts + 1)]
            losses, gradient_sums = [], None
            for first, end in zip(bounds[:-1], bounds[1:]):
                weight = tf.cast(end - first, tf.float32) / tf.cast(size, tf.float32)
                part_loss, part_gradients = loss_and_gradients(
                    tf.nest.map_structure(lambda x: x[first:end], features), targets[first:end])
                losses.append(weight * part_loss)
                weighted = [None if g is None else weight * g for g in part_gradients]
                gradient_sums = weighted if gradient_sums is None else [
                    None if a is None else a + b for a, b in zip(gradient_sums, weighted)]
            loss, gradients = tf.add_n(losses), gradient_sums
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return train_step


def make_train_step(model, wavenet_config, optimizer, window, jit_compile=False, parts=1):
    """A compiled ``step(features, targets) -> loss in nats``: one Adam update on the window loss
    (``parts``: see :func:`gradient_step`).

    features: {"codes": (B, R+W-1) int32, "genre_id": (B,) int32}; targets (B, W) int32.
    """
    def loss_of(features, targets):
        logits = model(wavenet_config.model_inputs(features["codes"], features["genre_id"]), training=True)
        return window_loss(targets, logits, window)

    return gradient_step(model, optimizer, loss_of, jit_compile=jit_compile, parts=parts)


def make_eval_step(model, wavenet_config, window):
    """A compiled ``step(features, targets) -> summed loss in nats over the batch's targets``."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def eval_step(features, targets):
        logits = model(wavenet_config.model_inputs(features["codes"], features["genre_id"]),
                       training=False)[:, -window:, :]
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


def learning_rate_at(step, learning_rate, *, schedule="constant", warmup_steps=0, total_steps=1,
                     min_learning_rate=0.0, time_fraction=0.0):
    """The learning rate for ``step`` (0-based): linear warmup over ``warmup_steps``, then ``constant`` or
    ``cosine`` decay to ``min_learning_rate`` at ``total_steps`` or when ``time_fraction`` (the share of
    ``--max_minutes`` used, 0 without a time budget) reaches 1, whichever comes first: a run stopped by its
    time budget still ends on a decayed rate, not halfway down a schedule laid out for more steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_fraction))
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
    checkpoint gets that name only once all its files are written and synced (local.fileio.atomic_dir).
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
    """Delete what a killed run left half-written in ``run_dir`` and its checkpoints (never trusted anyway)."""
    return fileio.remove_stale_temps(run_dir) + fileio.remove_stale_temps(checkpoints_dir(run_dir))


def optimizer_arrays(optimizer):
    """The optimizer's state (iterations, Adam moments, ...) as a list of numpy arrays, in variable order."""
    return [np.asarray(v.numpy()) for v in optimizer.variables]


def save_checkpoint(run_dir, step, model, optimizer, state, *, keep=3):
    """Write checkpoint ``step`` atomically: weights, optimizer state and ``state`` (a JSON-able dict).

    The directory is filled under a temp name and renamed to ``checkpoints/step-N`` once complete
    (local.fileio.atomic_dir; a checkpoint of the same step is replaced); then all but the newest ``keep``
    checkpoints are deleted. Returns its path.
    """
    final = os.path.join(checkpoints_dir(run_dir), checkpoint_name(step))
    with fileio.atomic_dir(final) as tmp:
        model.save_weights(os.path.join(tmp, "model.weights.h5"))
        with open(os.path.join(tmp, "optimizer.npz"), "wb") as f:
            np.savez(f, *optimizer_arrays(optimizer))
        write_json_atomic(os.path.join(tmp, "state.json"), {**state, "step": int(step)})
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


def load_newest_good_checkpoint(run_dir, model, optimizer, log=print):
    """Restore the newest checkpoint that loads; one that does not (cut, corrupted) is reported with ``log``
    and the one before it is tried. Returns (state, path), or (None, None) when none loads."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path, model, optimizer)
            if not isinstance(state, dict) or int(state.get("step", -1)) != step:
                raise ValueError("its state.json does not describe this step")
            return state, path
        except Exception as e:  # h5py/np/json raise many types on damaged bytes; every one means "not usable"
            log(f"warning: checkpoint {path} cannot be loaded ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:100] if str(e) else 'damaged'}): trying the previous one")
    return None, None


def save_model(model, run_dir, name="model.keras"):
    """Save the full model to ``run_dir/name`` atomically (local.fileio.atomic_path); return the path."""
    path = os.path.join(run_dir, name)
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    return path


# --- the training loop (run_model_training.py) ---------------------------------------------------------

@dataclasses.dataclass
class Task:
    """What one model kind gives :func:`train`; the loop, resume, metrics, checkpoints, TensorBoard, the time
    budget and the callbacks are shared. :func:`wavenet_task` makes the WaveNet's.

    model          the Keras model trained (its weights are checkpointed)
    optimizer      its optimizer (checkpointed)
    batches        ``batches(examples_done) -> iterator of (features, targets)``, resumable from a count
    train_step     ``train_step(features, targets) -> loss in nats`` (one update)
    validate       ``validate() -> {column: value}``, must include ``valid_column``
    batch_size     examples per step; ``samples_per_example``: samples each example scores (samples/second)
    loss_column    metrics column of the mean train loss in bits since the last row
    valid_column   the validation loss column (lower = better) whose best value the state keeps
                   (``best_<valid_column>``)
    baseline_bits  dashed line in loss.png (None = none)
    export_model   the model saved as model.keras (None = ``model``)
    loss_title, loss_unit   loss.png's title and y axis (the loss columns are in bits per this unit)
    """
    model: object
    optimizer: object
    batches: object
    train_step: object
    validate: object
    batch_size: int
    samples_per_example: int = 1
    loss_column: str = "train_bits_per_sample"
    valid_column: str = "valid_bits_per_sample"
    baseline_bits: float = None
    export_model: object = None
    loss_title: str = "WaveNet loss"
    loss_unit: str = "bits per sample"


@dataclasses.dataclass
class Evaluation:
    """What an ``on_evaluate`` callback of :func:`train` sees: called at every evaluation (every
    ``eval_every`` steps, at the last step and when the time budget stops the run), before the metrics row
    is written; it returns a dict of extra metrics columns (or None)."""
    step: int
    row: dict
    task: Task
    run_dir: str
    final: bool


def run_callbacks(on_evaluate, evaluation):
    """Call each ``on_evaluate`` callback in turn with ``evaluation`` (:class:`Evaluation`), adding the columns it
    returns to ``evaluation.row`` (so later callbacks see them); returns the row. The Spark trainer, which has
    its own loop, calls this after each epoch with ``task=None``."""
    for callback in on_evaluate:
        evaluation.row.update(callback(evaluation) or {})
    return evaluation.row


def train(task, run_dir, state, *, config, steps, eval_every, checkpoint_every, keep_checkpoints,
          learning_rate_at=None, max_minutes=0.0, on_evaluate=(), writer=None):
    """Train ``task`` from ``state`` (:func:`resume`) up to ``steps`` or ``max_minutes`` (0 = no limit) of the
    run's training time (counted across resumes, like ``steps``); return the summary: {"step", "stopped" ("steps"|"max_minutes"), "minutes", "last_row"}.

    Every ``eval_every`` steps (and at the end) a metrics row is written (:func:`record_evaluation`) after
    the ``on_evaluate`` callbacks (:class:`Evaluation`) added their columns; every ``checkpoint_every``
    steps (and at the end) a checkpoint and model.keras (:func:`save_progress`).
    ``learning_rate_at(step, time_fraction)`` sets the optimizer's rate before each step; ``time_fraction`` is
    the share of ``max_minutes`` used so far (0 when there is no time budget). Raises StageError (status 1) when the input pipeline fails
    or the loss stops being finite.
    """
    import tensorflow as tf
    from tqdm import tqdm
    step, losses, stopped = int(state["step"]), [], "steps"
    if step >= steps:
        print(f"{run_dir} is already trained to step {step}; pass a larger --steps to continue")
    elif max_minutes > 0 and state.get("elapsed_seconds", 0.0) >= 60 * max_minutes:
        print(f"{run_dir} has already trained for {state['elapsed_seconds'] / 60:.1f} min; pass a larger "
              f"--max_minutes to continue")
        steps, stopped = step, "max_minutes"
    batches = iter(task.batches(state["examples_done"]))
    progress = tqdm(total=steps, initial=step, unit="step", dynamic_ncols=True, disable=step >= steps)
    call_started = interval_start = time.perf_counter()
    started = interval_start - state.get("elapsed_seconds", 0.0)  # elapsed time counts across resumes
    best_key = f"best_{task.valid_column}"
    try:
        while step < steps:
            if learning_rate_at is not None:
                time_fraction = (time.perf_counter() - started) / (60 * max_minutes) if max_minutes > 0 else 0.0
                task.optimizer.learning_rate.assign(learning_rate_at(step, time_fraction))
            try:
                features, targets = next(batches)
            except tf.errors.OpError as e:  # the input thread failed: say why in one line
                raise StageError(f"reading the training data failed: {e.message.strip().splitlines()[-1]}", 1)
            loss = float(task.train_step(features, targets))
            if not math.isfinite(loss):
                last = latest_checkpoint(run_dir)
                raise StageError(f"the loss became {loss} at step {step + 1}; stopped. The last good checkpoint is "
                                 f"{last[1] if last else 'none'}: rerun with a lower --learning_rate or --grad_clip", 1)
            losses.append(loss / LN2)
            step += 1
            state["step"], state["examples_done"] = step, state["examples_done"] + task.batch_size
            progress.update(1)
            out_of_time = max_minutes > 0 and time.perf_counter() - started >= 60 * max_minutes
            final = step == steps or out_of_time
            if step % eval_every == 0 or final:
                seconds = time.perf_counter() - interval_start
                validated = task.validate()
                row = metrics_row(step, losses={task.loss_column: float(np.mean(losses)), **validated},
                                  samples_per_second=len(losses) * task.batch_size * task.samples_per_example
                                  / max(seconds, 1e-9),
                                  learning_rate=float(task.optimizer.learning_rate.numpy()),
                                  elapsed_seconds=time.perf_counter() - started)
                run_callbacks(on_evaluate, Evaluation(step, row, task, run_dir, final))
                if state.get(best_key) is None or row[task.valid_column] < state[best_key]:
                    state[best_key] = row[task.valid_column]
                record_evaluation(run_dir, row, writer=writer, baseline_bits=task.baseline_bits,
                                  plot={"columns": (task.loss_column, task.valid_column), "title": task.loss_title,
                                        "ylabel": task.loss_unit})
                progress.write(f"step {step}: " + ", ".join(f"{k} {row[k]:.3f}" for k in [task.loss_column, *validated])
                               + f", {row['samples_per_second']:,.0f} samples/s")
                losses, interval_start = [], time.perf_counter()
            if step % checkpoint_every == 0 or final:
                saved_at = time.perf_counter()
                state["elapsed_seconds"] = saved_at - started
                save_progress(run_dir, task.model, task.optimizer, state, config=config, keep=keep_checkpoints,
                              export_model=task.export_model)
                interval_start += time.perf_counter() - saved_at  # checkpoint time is not training throughput
            if out_of_time:
                stopped = "max_minutes"
                progress.write(f"stopped at step {step}: --max_minutes={max_minutes:g} reached")
                break
        if not os.path.isfile(os.path.join(run_dir, "model.keras")):
            save_model(task.export_model or task.model, run_dir)
    finally:
        progress.close()
        close_run_dir(run_dir)
    rows = read_metrics(run_dir)
    return {"step": step, "stopped": stopped, "minutes": (time.perf_counter() - call_started) / 60,
            "last_row": rows[-1] if rows else None}


def stuck_warning(check_step, quantization_channels, start_step=0):
    """An ``on_evaluate`` callback: warn when the train loss is still about log2(Q) bits at ``check_step``
    (0 = off; the first evaluation at or after it, in a run resumed from ``start_step``) - the model
    predicts nothing yet."""
    last = {"step": start_step}
    uniform_bits = math.log2(quantization_channels)

    def check(evaluation):
        bits = evaluation.row["train_bits_per_sample"]
        if check_step and last["step"] < check_step <= evaluation.step and bits > uniform_bits - 0.1:
            print(f"warning: the train loss is still {bits:.2f} bits/sample at step {evaluation.step}, about "
                  f"log2({quantization_channels}) = {uniform_bits:.2f}: the model predicts nothing yet "
                  f"(check the data, try a lower --learning_rate)", file=sys.stdout)
        last["step"] = evaluation.step

    return check


def wavenet_task(wavenet_config, *, train_tracks, valid_tracks, config):
    """The WaveNet's :class:`Task`: the model (seeded by ``config["seed"]``), Adam, the resumable stream of
    train windows (local.dataset.TrainStream) and the fixed validation windows.

    config  the stage-3 config (batch_size, window, learning_rate, grad_clip, cache_tracks,
            prefetch_batches, valid_windows, seed, jit_compile, threads)
    """
    import keras
    from local import dataset
    from local.wavenet import build_wavenet
    field, window, batch_size = wavenet_config.receptive_field, config["window"], config["batch_size"]
    parts = min(use_threads(config.get("threads", 0)), batch_size)  # before TensorFlow starts its thread pools
    keras.utils.set_random_seed(config["seed"])
    model = build_wavenet(wavenet_config)
    optimizer = make_optimizer(config["learning_rate"], config["grad_clip"])
    stream = dataset.TrainStream(train_tracks, field, window, batch_size, seed=config["seed"],
                                 cache_tracks=config["cache_tracks"])
    valid_set = dataset.validation_set(valid_tracks, field, window, config["valid_windows"])
    eval_step = make_eval_step(model, wavenet_config, window)
    return Task(model=model, optimizer=optimizer,
                batches=lambda examples_done: dataset.to_tf_dataset(stream, examples_done, config["prefetch_batches"]),
                train_step=make_train_step(model, wavenet_config, optimizer, window,
                                           jit_compile=config.get("jit_compile", False), parts=parts),
                validate=lambda: {"valid_bits_per_sample": evaluate_bits(eval_step, valid_set, batch_size)},
                batch_size=batch_size, samples_per_example=window,
                baseline_bits=wavenet_config.uniform_bits)
