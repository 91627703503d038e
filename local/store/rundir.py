"""The run directory: what a trainer writes into ``run_dir`` and reads back, for any model kind.

    config.json         the resolved stage-3 config            (local.core.config.save_config)
    model.json          what a generator or tagger needs to rebuild the model (write_model_json / read_model_json)
    model.keras         the latest complete model, loadable with keras.models.load_model
    checkpoints/step-00000100/   model.weights.h5, optimizer.npz, state.json   (newest = highest step)
    metrics.csv         step, then the model kind's loss columns, samples_per_second, ... (+ extra columns)
    loss.png            train and valid curves, redrawn from metrics.csv
    tensorboard/        TensorBoard scalars (every numeric metrics column)
    .waveforms.lock     held by the one process training in it (local.core.locks; :func:`locked`)

This module knows no model: a model.json is a dict, a model anything with Keras's save/load methods. The
model kinds (local.train.kinds) and the loop (local.train.runner) build on it; everything is written with
local/core/fileio.py, so a killed run never leaves a file (or a checkpoint directory) that looks complete but is
not.
"""
import contextlib
import csv
import glob
import json
import math
import os
import shutil

import numpy as np

from local.core import checks, fileio, locks
from local.core.config import StageError, save_config
from local.core.fileio import write_json_atomic
from local.core.plots import plot_loss
from local.store.layout import RunDir

MODEL_KINDS = ("wavenet", "tagger", "prior")  # the ``model`` key: what a run directory holds (model.json ``kind``)
METRICS_COLUMNS = ["step", "train_bits_per_sample", "valid_bits_per_sample", "samples_per_second",
                   "learning_rate", "elapsed_seconds"]
CHECKPOINT_FILES = ("model.weights.h5", "optimizer.npz", RunDir.CHECKPOINT_STATE)


# --- model.json ----------------------------------------------------------------------------------------

def write_model_json(run_dir, model_json):
    """Write the dict ``model_json`` as ``run_dir/model.json`` atomically and return its path."""
    return write_json_atomic(RunDir(run_dir).model_json, model_json)

def read_model_json(run_dir):
    """The dict in ``run_dir/model.json``; FileNotFoundError naming the file when there is none."""
    path = RunDir(run_dir).model_json
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
    path = RunDir(run_dir).model_keras
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive: a cut or foreign file is not one
        return (f"{path} is damaged (not a complete .keras archive): rerun run_model_training.py with "
                f"--run_dir={run_dir} (it saves the model again from the newest good checkpoint)")
    return ""

def run_kind(info):
    """The kind of model a ``model.json`` dict describes (:data:`MODEL_KINDS`; runs older than the tagger
    have no ``kind``: WaveNets)."""
    return info.get("kind", "wavenet")

def resume_conflict(run_dir, model_json, shown_as=None):
    """Why ``run_dir`` cannot be resumed with the model ``model_json`` (one line), or "" when it can.

    Only a run that has a checkpoint is compared: one killed before its first checkpoint starts afresh.
    ``shown_as`` names the run in the message (a URI whose local copy ``run_dir`` is).
    """
    if not latest_checkpoint(run_dir) or not os.path.isfile(RunDir(run_dir).model_json):
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


# --- the run directory ---------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(run_dir, model_json, shown_as=None):
    """Hold ``run_dir`` for training ``model_json``'s model for the ``with`` block, and release it on every
    path out of it (an error, a resume that fails, Ctrl-C; in the Spark job too).

    On entry: the folder is made and locked for this process (one writer per run_dir, :mod:`local.core.locks`),
    what a killed run left half-written is cleared, and StageError (one line) is raised when it is a file
    or unwritable, another process trains in it, or it holds checkpoints of another model or of another
    dataset (genre ids, sample rate or codes that would change meaning). ``shown_as`` names the run in
    messages (a URI whose local copy ``run_dir`` is)."""
    problem = checks.output_folder_problem(run_dir, "run_dir") if shown_as is None else ""
    if problem:
        raise StageError(problem)
    os.makedirs(run_dir, exist_ok=True)
    try:
        lock = locks.acquire_lock(run_dir, "training")
    except locks.LockHeld as e:
        raise StageError(str(e)) from None
    try:
        remove_stale_temps(run_dir)
        conflict = resume_conflict(run_dir, model_json, shown_as)
        if not conflict and latest_checkpoint(run_dir):
            conflict = checks.resume_dataset_problem(saved_run_info(run_dir), model_json["genres"],
                                                     model_json["sample_rate"], model_json["quantization_channels"],
                                                     model_json["data_dir"], shown_as or run_dir)
        if conflict:
            raise StageError(conflict)
        yield run_dir
    finally:
        lock.release()

def new_state():
    """The state of a run before its first step (checkpointed as state.json, with the config and seed)."""
    return {"step": 0, "examples_done": 0, "best_valid_bits_per_sample": None, "elapsed_seconds": 0.0}

def write_run_files(run_dir, config, model_json):
    """Write ``config.json`` (the resolved config) and ``model.json`` into ``run_dir``."""
    save_config(config, run_dir)
    write_model_json(run_dir, model_json)

def tensorboard_writer(run_dir):
    """A TensorBoard summary writer on ``run_dir/tensorboard``."""
    import tensorflow as tf
    return tf.summary.create_file_writer(RunDir(run_dir).tensorboard)

@contextlib.contextmanager
def tensorboard(run_dir):
    """A TensorBoard summary writer on ``run_dir/tensorboard`` for the ``with`` block (closed on every path)."""
    writer = tensorboard_writer(run_dir)
    try:
        yield writer
    finally:
        writer.close()

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


# --- metrics.csv and loss.png --------------------------------------------------------------------------

def metrics_path(run_dir):
    return RunDir(run_dir).metrics_csv

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
    rows = read_metrics(run_dir)
    nan = float("nan")
    train = [(r["step"], r.get(columns[0], nan)) for r in rows]
    valid = [(r["step"], r.get(columns[1], nan)) for r in rows]
    train, valid = ([(s, b) for s, b in pairs if not math.isnan(b)] for pairs in (train, valid))
    return plot_loss(RunDir(run_dir).loss_png, steps=[s for s, _ in train], train_bits=[b for _, b in train],
                     valid_steps=[s for s, _ in valid], valid_bits=[b for _, b in valid], baseline_bits=baseline_bits,
                     title=title, ylabel=ylabel)


# --- checkpoints ---------------------------------------------------------------------------------------

def checkpoints_dir(run_dir):
    return RunDir(run_dir).checkpoints

def checkpoint_name(step):
    return f"step-{int(step):08d}"

def list_checkpoints(run_dir):
    """The complete checkpoints of a run, oldest first: a list of (step, path).

    Only directories named ``step-NNNNNNNN`` holding every file of :data:`CHECKPOINT_FILES` count; a
    checkpoint gets that name only once all its files are written and synced (local.core.fileio.atomic_dir).
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
    (local.core.fileio.atomic_dir; a checkpoint of the same step is replaced); then all but the newest ``keep``
    checkpoints are deleted. Returns its path.
    """
    final = os.path.join(checkpoints_dir(run_dir), checkpoint_name(step))
    with fileio.atomic_dir(final) as tmp:
        model.save_weights(os.path.join(tmp, "model.weights.h5"))
        with open(os.path.join(tmp, "optimizer.npz"), "wb") as f:
            np.savez(f, *optimizer_arrays(optimizer))
        write_json_atomic(RunDir.checkpoint_state(tmp), {**state, "step": int(step)})
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
    with open(RunDir.checkpoint_state(path), encoding="utf-8") as f:
        return json.load(f)

def state_problem(state):
    """What in a checkpoint's state dict the loop could not use (a garbled field: ``"examples_done": "x"``), or
    "": the counts are whole numbers >= 0, the seconds and the best loss finite numbers (the loss may be null)."""
    def whole(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0

    rules = {"examples_done": whole, "elapsed_seconds": number, "epoch": whole}
    for key, value in state.items():
        good = rules.get(key, (lambda v: v is None or number(v)) if key.startswith("best_") else None)
        if good is not None and not good(value):
            return f"has {key}={str(value)[:40]!r}, not a usable value"
    return ""


def load_newest_good_checkpoint(run_dir, model, optimizer, log=print):
    """Restore the newest checkpoint that loads; one that does not (cut, corrupted) is reported with ``log``
    and the one before it is tried. Returns (state, path), or (None, None) when none loads."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path, model, optimizer)
            if not isinstance(state, dict) or state.get("step") != step:
                raise ValueError("its state.json does not describe this step")
            if state_problem(state):
                raise ValueError(f"its state.json {state_problem(state)}")
            return state, path
        except Exception as e:  # h5py/np/json raise many types on damaged bytes; every one means "not usable"
            log(f"warning: checkpoint {path} cannot be loaded ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:100] if str(e) else 'damaged'}): trying the previous one")
    return None, None

def save_model(model, run_dir, name=RunDir.MODEL_KERAS):
    """Save the full model to ``run_dir/name`` atomically (local.core.fileio.atomic_path); return the path."""
    path = os.path.join(run_dir, name)
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    return path
