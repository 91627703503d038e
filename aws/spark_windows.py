"""Stage 3 on Spark with Elephas: training windows cut on the executors, the local WaveNet trained on them.

Windows come from :func:`local.dataset.windows.windows_from_codes` (the local trainer's own cutter) inside
``mapPartitions``: uint8 inputs (receptive_field + window - 1 codes) and uint8 next-code targets (window
codes), 1 byte per sample, never one-hot. The loss is :func:`local.train.wavenet_task.window_loss` on the last
``window`` positions, so a Spark-trained model and a locally trained one are the same model.

Elephas 7.3 facts this module guards against:
  * ``SparkModel`` averages the workers' weight deltas once per epoch (synchronous); the asynchronous modes are
    ``AsynchronousSparkModel(mode='asynchronous'|'hogwild')`` - ``SparkModel(mode=...)`` would silently train
    synchronously. :func:`elephas_model` picks the class from ``mode``.
  * A partition with <= batch_size rows contributes a zero delta to the average: :func:`balanced_windows`
    deals the windows round-robin into partitions of more than ``batch_size`` rows each.
  * ``fit`` needs ``batch_size``; ``SparkModel.save('x.keras')`` fails: the master network is saved with
    :func:`local.store.rundir.save_model`.
  * An asynchronous model can be fit once and leaves its parameter server running when fit raises: a fresh
    one is made per epoch and :func:`fit_epoch` always stops its server. Its Flask server would run in debug
    mode: switched off.
  * Elephas splits a multi-input model's single feature array with ``np.hsplit`` (equal parts), which cannot
    feed ``codes`` and ``genre_id``: a conditioned WaveNet is trained inside :func:`training_model`, a wrapper
    taking one array whose column 0 is the genre id.
"""
import hashlib

import keras
import numpy as np

from local.dataset import windows as dataset
from local.train import loop, wavenet_task


def track_seed(seed, epoch, track_id):
    """A stable per-(seed, epoch, track) seed for the window phase (independent of partitioning)."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{track_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def train_windows(rows, *, receptive_field, window, seed, epoch, conditioned, lead=0, silence_code=0):
    """Executor side: track rows (track_id, genre_id, n_samples, codes) -> (inputs, targets) uint8 pairs.

    Each track's windows tile it from a random phase (:func:`local.dataset.windows.track_starts`), after ``lead`` codes
    of silence (``--start_from_silence``, as the local trainer: :func:`local.dataset.windows.lead_in`); with
    ``conditioned`` the genre id is prepended to the inputs (see :func:`training_model`).
    """
    for row in rows:
        rng = np.random.default_rng(track_seed(seed, epoch, row.track_id))
        starts = dataset.track_starts(row.n_samples + lead, receptive_field, window, rng)
        if not len(starts):
            continue
        codes = dataset.silence_first(np.frombuffer(row.codes, dtype=np.uint8), lead, silence_code)
        inputs, targets = dataset.windows_from_codes(codes, receptive_field, window, starts)
        inputs, targets = inputs.astype(np.uint8), targets.astype(np.uint8)
        if conditioned:
            inputs = np.concatenate([np.full((len(inputs), 1), row.genre_id, np.uint8), inputs], axis=1)
        yield from zip(inputs, targets)


def valid_windows(rows, receptive_field, window, counts, lead=0, silence_code=0):
    """Executor side: the fixed validation windows of each track row, cut by :func:`local.dataset.windows.validation_windows`
    as the local trainer cuts them (``counts[track_id]`` windows per track, after ``lead`` codes of silence).
    Yields (track_id, (features, targets))."""
    for row in rows:
        codes = dataset.silence_first(np.frombuffer(row.codes, dtype=np.uint8), lead, silence_code)
        features, targets = dataset.validation_windows(codes, row.genre_id, receptive_field, window,
                                                       counts[row.track_id])
        if len(targets):
            yield row.track_id, (features, targets)


def valid_window_counts(tracks, receptive_field, window, n_windows):
    """{track_id: windows} as :func:`local.dataset.windows.validation_set` shares ``n_windows`` over ``tracks``."""
    counts = dataset.valid_window_counts(tracks, receptive_field, window, n_windows)
    return {t["track_id"]: count for t, count in zip(tracks, counts) if count}


def balanced_windows(windows, batch_size, num_workers):
    """Deal ``windows`` (an RDD) round-robin into k partitions of equal size (+-1), each > ``batch_size`` rows.

    k = min(num_workers, n // (batch_size + 1)). Returns (rdd, n, k); k = 0 when there are too few windows.
    """
    n = windows.count()
    k = min(int(num_workers), n // (batch_size + 1))
    if k < 1:
        return windows, n, 0
    dealt = (windows.zipWithIndex().map(lambda pair: (pair[1] % k, pair[0]))
             .partitionBy(k, lambda key: key).values())
    return dealt, n, k


@keras.saving.register_keras_serializable(package="waveforms")
def next_code_loss(targets, logits):
    """Keras loss: :func:`local.train.wavenet_task.window_loss` over the last ``targets.shape[1]`` positions (nats).

    targets (B, W) integer codes (uint8 from the executors); logits (B, T, Q), T >= W. Registered, because
    Elephas rebuilds the compiled model from its JSON on every worker.
    """
    import tensorflow as tf
    targets = tf.cast(targets, tf.int32)
    return wavenet_task.window_loss(targets, logits, tf.shape(targets)[1])


@keras.saving.register_keras_serializable(package="waveforms")
class GenreSplit(keras.layers.Layer):
    """(B, 1 + T) int rows [genre_id, codes...] -> ``part`` = "genre": (B,) int32, or "codes": (B, T) int32."""

    def __init__(self, part="codes", **kwargs):
        super().__init__(**kwargs)
        self.part = part

    def call(self, x):
        x = keras.ops.cast(x, "int32")
        return x[:, 0] if self.part == "genre" else x[:, 1:]

    def get_config(self):
        return {**super().get_config(), "part": self.part}


CUSTOM_OBJECTS = {"next_code_loss": next_code_loss, "GenreSplit": GenreSplit}


def training_model(wavenet, wavenet_config):
    """(model Elephas trains, custom_objects): the WaveNet itself, or for a genre-conditioned one (per
    ``wavenet_config``, a :class:`local.model.wavenet.WaveNetConfig`) a wrapper taking (B, 1 + T) rows
    [genre_id, codes...] that calls it (same weights, so the WaveNet is trained)."""
    if not wavenet_config.conditioned:
        return wavenet, dict(CUSTOM_OBJECTS)
    rows = keras.Input(shape=(None,), dtype="int32", name="genre_and_codes")
    logits = wavenet(wavenet_config.model_inputs(GenreSplit(part="codes", name="codes_part")(rows),
                                                 GenreSplit(part="genre", name="genre_part")(rows)))
    return keras.Model(rows, logits, name="wavenet_rows"), dict(CUSTOM_OBJECTS)


def epoch_train_bits(spark_model, windows, *, eval_step, wavenet_config, batch_size, n_sample):
    """The train loss of the epoch just fit, bits/sample: synchronous Elephas reports each worker's mean loss
    over its share (nats); the asynchronous modes report none, so the master scores ``n_sample`` of the
    epoch's ``windows`` (an RDD of (inputs, targets))."""
    histories = [h for h in spark_model.training_histories if h and h.get("loss")]
    if histories:
        return float(np.mean([h["loss"][-1] for h in histories])) / loop.LN2
    sample = windows.take(n_sample)
    rows = np.stack([x for x, _ in sample]).astype(np.int32)
    conditioned = wavenet_config.conditioned
    features = {"codes": rows[:, 1:] if conditioned else rows,
                "genre_id": rows[:, 0] if conditioned else np.zeros(len(rows), np.int32)}
    return wavenet_task.evaluate_bits(eval_step, (features, np.stack([y for _, y in sample]).astype(np.int32)),
                                  batch_size)


def elephas_model(model, *, mode, frequency, port, batch_size, custom_objects, parameter_server_mode="http"):
    """The Elephas model for ``mode``: SparkModel (synchronous) or AsynchronousSparkModel (asynchronous, hogwild).

    ``model`` must be compiled. The HTTP parameter server's Flask debug mode is switched off.
    """
    from elephas.spark_model import AsynchronousSparkModel, SparkModel
    if mode == "synchronous":
        return SparkModel(model, num_workers=None, custom_objects=custom_objects, batch_size=batch_size)
    spark_model = AsynchronousSparkModel(model, num_workers=None, custom_objects=custom_objects,
                                         batch_size=batch_size, mode=mode, frequency=frequency,
                                         parameter_server_mode=parameter_server_mode, port=port)
    if hasattr(spark_model.parameter_server, "debug"):
        spark_model.parameter_server.debug = False  # Elephas defaults Flask to debug mode (a code-exec console)
    return spark_model


def fit_epoch(spark_model, windows, batch_size):
    """One pass over ``windows`` (an RDD of (inputs, targets)) with Elephas; the parameter server of an
    asynchronous model is stopped even when fit raises (Elephas would leave it holding its port)."""
    server = getattr(spark_model, "parameter_server", None)
    try:
        spark_model.fit(windows, epochs=1, batch_size=batch_size, verbose=0)
    finally:
        if server is not None:
            stop_server(server)
    return spark_model.master_network


def stop_server(server):
    """Stop an Elephas parameter server if it still runs (HTTP: a process; socket: a thread)."""
    process = getattr(server, "server", None)
    if process is not None:
        try:
            alive = process.is_alive()
        except ValueError:  # closed: Elephas stopped it normally
            alive = False
        if alive:
            process.terminate()
            process.join()
    thread = getattr(server, "thread", None)
    if thread is not None and thread.is_alive():
        server.stop()
