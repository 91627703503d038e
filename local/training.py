"""Stage 3's loop, shared by every model kind and both trainers: config checks, resume, the loop, train_one.

The run directory's files (model.json, the lock, metrics.csv, checkpoints) are local/rundir.py's, which
knows no model. A model kind (local/kinds.py: the WaveNet, the genre tagger) is described once as a
:class:`ModelKind`: how it checks its keys and its dataset, its model.json, its :class:`Task`, what it does
after training. :func:`train_one` runs that sequence for ``run_model_training.py``, the tagger and
``aws/spark_training.py`` alike (the Spark job brings its own dataset reader, task and epoch loop).

The laptop loop, :func:`train`, knows nothing of the WaveNet: a model kind hands it a :class:`Task`
(:func:`wavenet_task` is the WaveNet's; a tagger makes its own), and callbacks (``on_evaluate``) may act at
every evaluation and add metrics columns.
"""
import dataclasses
import math
import os
import sys
import time

import numpy as np

from local import checks, dataset, dataset_store, rundir, samples
from local.config import ConfigError, StageError, check_choices, check_minimums, configure
from local.wavenet import WaveNetConfig, build_wavenet

LN2 = math.log(2.0)
# The least value of each training key either trainer has (a key a trainer lacks is not checked).
TRAINING_MINIMUMS = {"batch_size": 1, "window": 1, "valid_windows": 1, "keep_checkpoints": 1, "cache_tracks": 1,
                     "prefetch_batches": 1, "eval_every": 1, "checkpoint_every": 1, "steps": 0, "epochs": 1,
                     "warmup_steps": 0, "grad_clip": 0, "min_learning_rate": 0, "stuck_check_step": 0,
                     "max_minutes": 0}
# The most of each: a run that could never end is a typo (1e23 steps), said in one line before any work.
TRAINING_MAXIMUMS = {"steps": 10 ** 9, "tagger_steps": 10 ** 9, "warmup_steps": 10 ** 9, "epochs": 10 ** 6}


# --- config and dataset checks (both trainers) ---------------------------------------------------------

def resolve_config(namespace, argv=None, kinds=None):
    """A trainer's resolved config: its config block (``globals()``, left as written) overridden from
    ``--config`` and ``argv`` (local.config.configure), then :func:`check_config` (``kinds``: see there)."""
    config = configure(dict(namespace), argv)
    check_config(config, kinds)
    return config


def check_config(config, kinds=None):
    """Check the stage-3 keys ``config`` has, the model keys included, before any data is read: the shared
    training keys, then the chosen model kind's own (``kinds``: {name: :class:`ModelKind`}, local.kinds.KINDS).

    Raises :class:`local.config.ConfigError` naming one key and what it accepts.
    """
    check_minimums(config, TRAINING_MINIMUMS)
    if "learning_rate" in config and not config["learning_rate"] > 0:
        raise ConfigError(f"--learning_rate={config['learning_rate']}: must be > 0")
    check_choices(config, {"lr_schedule": ("constant", "cosine"), "model": rundir.MODEL_KINDS})
    if checks.shared_folder_problem(config, "run_dir", "data_dir"):
        raise ConfigError(checks.shared_folder_problem(config, "run_dir", "data_dir"))
    for key, most in TRAINING_MAXIMUMS.items():
        if key in config and config[key] > most:
            raise ConfigError(f"--{key}={config[key]}: must be at most {most:,}")
    samples.check_config(config)
    wavenet = WaveNetConfig.from_config(config)
    if config.get("model", "wavenet") == "wavenet":  # sized before any model is built or data read
        problem = checks.training_memory_problem(config, len(wavenet.dilations), wavenet.window_field)
        if problem:
            raise ConfigError(problem)
    kind = (kinds or {}).get(config.get("model", "wavenet"))
    if kind is not None and kind.check_config is not None:
        kind.check_config(config)


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
    sample_rate (Hz), quantization_channels, receptive_field (samples, the sample-level stack's),
    total_receptive_field (samples, both stacks) and total_receptive_field_seconds, context_past, data_dir."""
    return {"kind": "wavenet", "model": wavenet_config.to_json(), "genres": list(genres),
            "sample_rate": int(sample_rate),
            "quantization_channels": wavenet_config.quantization_channels,
            "receptive_field": wavenet_config.receptive_field, **wavenet_config.receptive_field_json(sample_rate),
            "data_dir": str(data_dir)}


# --- resume ------------------------------------------------------------------------------------------

def resume(run_dir, model, optimizer, shown_as=None):
    """The run's state: from its latest checkpoint (weights and optimizer restored into ``model`` and
    ``optimizer``; a damaged newest checkpoint is reported and the previous good one used), else
    :func:`local.rundir.new_state`. metrics.csv keeps only the rows up to that step, and samples/ only the clips (the steps
    after it are redone)."""
    state = rundir.new_state()
    if rundir.latest_checkpoint(run_dir):
        loaded, path = rundir.load_newest_good_checkpoint(run_dir, model, optimizer)
        if loaded is None:
            raise StageError(f"no checkpoint in {rundir.checkpoints_dir(run_dir)} can be loaded: use another --run_dir")
        state.update(loaded)
        epoch = f", epoch {state['epoch']}" if "epoch" in state else ""
        print(f"resuming {shown_as or run_dir} from step {state['step']}{epoch} ({path})")
    rundir.truncate_metrics(run_dir, state["step"])
    samples.truncate_samples(run_dir, state["step"])
    return state


def describe(model, wavenet_config, *, sample_rate, n_train, n_valid, n_valid_windows):
    """One line on what is trained: parameters, receptive field, tracks and validation windows."""
    field, total = wavenet_config.receptive_field, wavenet_config.total_receptive_field
    context = (f" (with the context stack {total} samples, {total / sample_rate:.2f} s)"
               if wavenet_config.has_context else "")
    return (f"{model.count_params():,} parameters, receptive field {field} samples "
            f"({field / sample_rate * 1000:.0f} ms){context}, {n_train} train / {n_valid} valid tracks, "
            f"{n_valid_windows} valid windows")


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
                last = rundir.latest_checkpoint(run_dir)
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
                row = rundir.metrics_row(step, losses={task.loss_column: float(np.mean(losses)), **validated},
                                  samples_per_second=len(losses) * task.batch_size * task.samples_per_example
                                  / max(seconds, 1e-9),
                                  learning_rate=float(task.optimizer.learning_rate.numpy()),
                                  elapsed_seconds=time.perf_counter() - started)
                run_callbacks(on_evaluate, Evaluation(step, row, task, run_dir, final))
                if state.get(best_key) is None or row[task.valid_column] < state[best_key]:
                    state[best_key] = row[task.valid_column]
                rundir.record_evaluation(run_dir, row, writer=writer, baseline_bits=task.baseline_bits,
                                  plot={"columns": (task.loss_column, task.valid_column), "title": task.loss_title,
                                        "ylabel": task.loss_unit})
                progress.write(f"step {step}: " + ", ".join(f"{k} {row[k]:.3f}" for k in [task.loss_column, *validated])
                               + f", {row['samples_per_second']:,.0f} samples/s")
                losses, interval_start = [], time.perf_counter()
            if step % checkpoint_every == 0 or final:
                saved_at = time.perf_counter()
                state["elapsed_seconds"] = saved_at - started
                rundir.save_progress(run_dir, task.model, task.optimizer, state, config=config, keep=keep_checkpoints,
                              export_model=task.export_model)
                interval_start += time.perf_counter() - saved_at  # checkpoint time is not training throughput
            if out_of_time:
                stopped = "max_minutes"
                progress.write(f"stopped at step {step}: --max_minutes={max_minutes:g} reached")
                break
        if not os.path.isfile(os.path.join(run_dir, "model.keras")):
            rundir.save_model(task.export_model or task.model, run_dir)
    finally:
        progress.close()
    rows = rundir.read_metrics(run_dir)
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

    # a window reads the context's past too (context_past codes, only the context stack's), then R + W - 1
    field, window, batch_size = wavenet_config.window_field, config["window"], config["batch_size"]
    parts = min(use_threads(config.get("threads", 0)), batch_size)  # before TensorFlow starts its thread pools
    keras.utils.set_random_seed(config["seed"])
    model = build_wavenet(wavenet_config)
    optimizer = make_optimizer(config["learning_rate"], config["grad_clip"])
    # windows may also start at a track's first sample after the silence the generator starts from (its
    # context stack would otherwise hear that silence only when generating; docs/demo-recipe-context.md)
    lead = field if config.get("start_from_silence", False) else 0
    train_tracks, read_train = dataset.lead_in(train_tracks, dataset_store.read_track_codes, lead,
                                               wavenet_config.silence_code)
    valid_tracks, read_valid = dataset.lead_in(valid_tracks, dataset_store.read_track_codes, lead,
                                               wavenet_config.silence_code)
    stream = dataset.TrainStream(train_tracks, field, window, batch_size, seed=config["seed"],
                                 cache_tracks=config["cache_tracks"], read_codes=read_train)
    valid_set = dataset.validation_set(valid_tracks, field, window, config["valid_windows"], read_codes=read_valid)
    eval_step = make_eval_step(model, wavenet_config, window)
    return Task(model=model, optimizer=optimizer,
                batches=lambda examples_done: dataset.to_tf_dataset(stream, examples_done, config["prefetch_batches"]),
                train_step=make_train_step(model, wavenet_config, optimizer, window,
                                           jit_compile=config.get("jit_compile", False), parts=parts),
                validate=lambda: {"valid_bits_per_sample": evaluate_bits(eval_step, valid_set, batch_size)},
                batch_size=batch_size, samples_per_example=window,
                baseline_bits=wavenet_config.uniform_bits)


# --- one model kind, one sequence (the script, the tagger, the Spark job) ------------------------------------

@dataclasses.dataclass
class DatasetView:
    """What a trainer knows of its dataset before training: ``info`` (dataset.json's dict, None when there is
    no dataset), ``index`` (one dict per track, no codes: track_id, genre, genre_id, split, n_samples, ...),
    ``stage2`` (the command that makes one, for messages). The Spark job reads it through Spark."""
    data_dir: str
    info: dict
    index: list
    stage2: str = "run_transformation_scripts.py"


def local_dataset(data_dir):
    """The :class:`DatasetView` of a dataset folder on this machine."""
    info = dataset_store.read_dataset_json(data_dir) if dataset_store.list_parts(data_dir) else None
    return DatasetView(data_dir, info, dataset_store.read_index(data_dir) if info is not None else [])


@dataclasses.dataclass
class Plan:
    """What a model kind decided from the config and the dataset, before any model exists (no TensorFlow).

    model_json    run_dir/model.json's dict (its ``kind``, ``model``, genres, sample_rate, ...)
    model_config  the kind's config dataclass (WaveNetConfig, TaggerConfig)
    train_tracks, valid_tracks   the index rows each split trains and validates on
    steps         the run's last step (a resumed run continues up to it)
    extra         the kind's own (e.g. the judge, the whole index)
    """
    model_json: dict
    model_config: object
    genres: list
    sample_rate: int
    dataset: DatasetView
    train_tracks: list
    valid_tracks: list
    steps: int
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ModelKind:
    """One model kind, described once; :func:`train_one` runs it.

    name          model.json's ``kind`` and the ``model`` key's value
    check_config  (config) -> None: the kind's own keys (ConfigError naming one), or None
    plan          (config, DatasetView) -> :class:`Plan`: checks the dataset (StageError, one line)
    task          (plan, config, run_dir) -> :class:`Task`: the model, optimizer, batches and validation
    describe      (plan, task, config) -> the line printed before training
    callbacks     (plan, task, config, state, run_dir) -> on_evaluate callbacks (:func:`train`), or None
    after_train   (plan, task, config, summary, run_dir) -> the summary returned, or None
    """
    name: str
    check_config: object
    plan: object
    task: object
    describe: object
    callbacks: object = None
    after_train: object = None


def train_locally(task, run_dir, state, *, config, plan, on_evaluate, writer):
    """The laptop loop for :func:`train_one`: :func:`train` up to ``plan.steps`` with the config's
    learning-rate schedule (:func:`learning_rate_at`), time budget, evaluation and checkpoint intervals."""
    def learning_rate(step, time_fraction=0.0):
        return learning_rate_at(step, config["learning_rate"], schedule=config["lr_schedule"],
                                warmup_steps=config["warmup_steps"], total_steps=plan.steps,
                                min_learning_rate=config["min_learning_rate"], time_fraction=time_fraction)

    return train(task, run_dir, state, config=config, steps=plan.steps, eval_every=config["eval_every"],
                 checkpoint_every=config["checkpoint_every"], keep_checkpoints=config["keep_checkpoints"],
                 learning_rate_at=learning_rate, max_minutes=config["max_minutes"], on_evaluate=on_evaluate,
                 writer=writer)


def train_one(kind, config, *, dataset=None, make_task=None, loop=train_locally, run_dir=None, shown_as=None):
    """Stage 3 for one resolved config and one :class:`ModelKind`: check the dataset and plan the model, hold
    the run directory (locked for the whole run, released on every path), build the task, resume from the
    newest good checkpoint, write config.json and model.json, train, then the kind's after-train step.

    The Spark job passes its own ``dataset`` (read through Spark), ``make_task`` (``(plan, config, run_dir)``:
    the model and the checkpoint optimizer), ``loop`` (its Elephas epochs; same signature as
    :func:`train_locally`), and ``run_dir`` (the local copy of a remote run, named ``shown_as`` in messages).
    Returns the kind's summary.
    """
    data = dataset if dataset is not None else local_dataset(config["data_dir"])
    plan = kind.plan(config, data)
    run_dir = run_dir or config["run_dir"]
    if loop is train_locally and plan.steps == 0 and not rundir.latest_checkpoint(run_dir):
        steps_key = "tagger_steps" if kind.name != "wavenet" else "steps"
        raise StageError(f"--{steps_key}=0 on a new run would save an untrained model as a finished run: "
                         f"pass --{steps_key}=N (N >= 1)")
    with rundir.locked(run_dir, plan.model_json, shown_as=shown_as):
        task = (make_task or kind.task)(plan, config, run_dir)
        state = resume(run_dir, task.model, task.optimizer, shown_as=shown_as)
        rundir.write_run_files(run_dir, config, plan.model_json)
        print(kind.describe(plan, task, config))
        on_evaluate = kind.callbacks(plan, task, config, state, run_dir) if kind.callbacks else []
        with rundir.tensorboard(run_dir) as writer:
            summary = loop(task, run_dir, state, config=config, plan=plan, on_evaluate=on_evaluate, writer=writer)
        return kind.after_train(plan, task, config, summary, run_dir) if kind.after_train else summary
