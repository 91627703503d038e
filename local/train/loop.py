"""The training loop every model kind shares: optimizer, gradient steps (split over threads), learning-rate
schedules, evaluation, checkpoints and resume, the time budget. It knows no model: a kind's
:class:`Task` brings the model, its data and its steps.
"""
import dataclasses
import math
import os
import sys
import time

import numpy as np

from local.core.config import StageError
from local.generate import samples
from local.store import rundir
from local.store.layout import RunDir

LN2 = math.log(2.0)


# --- resume ------------------------------------------------------------------------------------------

def resume(run_dir, model, optimizer, shown_as=None):
    """The run's state: from its latest checkpoint (weights and optimizer restored into ``model`` and
    ``optimizer``; a damaged newest checkpoint is reported and the previous good one used), else
    :func:`local.store.rundir.new_state`. metrics.csv keeps only the rows up to that step, and samples/ only the clips (the steps
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
        if not os.path.isfile(RunDir(run_dir).model_keras):
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
