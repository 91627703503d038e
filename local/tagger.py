"""The genre tagger: a sample-level CNN on raw waveforms (Lee et al. 2017), sized for a CPU, and its training.

Lee, Park, Kim, Nam (2017), "Sample-level deep convolutional neural networks for music auto-tagging using
raw waveforms": the network sees the samples themselves. A first convolution of 3 taps with stride 3, then
blocks of conv(3) + batch norm + ReLU + max-pool(3), each dividing the time axis by 3, so an input of
3^n samples shrinks to one frame after n - 1 blocks. The paper uses 59,049 samples and 128..512 channels;
here 3^9 = 19,683 samples (1.23 s at 16 kHz) and 16..128 channels, about 15 M multiply-adds per window, so
it trains on 2 CPU cores in about a minute on the demo dataset.

Input ``waveform`` (batch, input_samples) float32 in [-1, 1]: the mu-law codes of the dataset expanded back
to samples (:func:`codes_to_waveform`). Layers::

    conv0 (stride 3) + conv0_bn + ReLU
    block{i}_conv (3 taps) + block{i}_bn + ReLU + block{i}_pool (3)      i = 1 .. len(channels) - 1
    pool (global average of what is left; one frame at the default sizes) + dropout
    embedding  Dense(embedding_size, ReLU): the vector judge.py compares (similar tracks, Frechet distance)
    logits     Dense(n_genres)

Training reads the same Parquet dataset through the same streaming window reader as the WaveNet
(:class:`local.dataset.TrainStream`, bounded memory: ``cache_tracks`` tracks at a time), one example = one
window of ``input_samples`` codes of a train track and its ``genre_id``; it writes the same run-directory
files with :mod:`local.training`'s functions. A track's genre = the argmax of the mean of its windows'
probabilities (:func:`track_predictions`); ``evaluation.json`` holds that accuracy on the valid and test
tracks, per genre, and the majority-class baseline.
"""
import dataclasses
import math
import os
import sys
import time

import numpy as np

KIND = "tagger"
EMBEDDING_LAYER = "embedding"
DEFAULT_CHANNELS = (16, 16, 32, 32, 64, 64, 128, 128, 128)
# Keras's 0.99 leaves the inference statistics far from the data after a run of a few hundred steps: valid
# loss rose while train loss fell at step 60 of the demo; 0.9 averages over ~10 steps.
BN_MOMENTUM = 0.9


@dataclasses.dataclass
class TaggerConfig:
    """The one description of a tagger: what :func:`build_tagger` builds and ``model.json`` stores."""
    input_samples: int = 3 ** 9  # samples per window (19,683 = 1.23 s at 16 kHz)
    channels: tuple = DEFAULT_CHANNELS  # channels of conv0, then of each block
    embedding_size: int = 64  # size of the embedding layer
    dropout: float = 0.3  # dropout before the embedding and before the logits
    n_genres: int = 1

    @classmethod
    def from_stage_config(cls, config, n_genres):
        """From stage 3's config dict (its ``tagger_*`` keys) and the dataset's number of genres."""
        return cls(input_samples=int(config["tagger_input_samples"]),
                   channels=tuple(int(c) for c in config["tagger_channels"]),
                   embedding_size=int(config["tagger_embedding_size"]), dropout=float(config["tagger_dropout"]),
                   n_genres=int(n_genres))

    @classmethod
    def from_dict(cls, data):
        return cls(**{**data, "channels": tuple(data["channels"])})

    def to_dict(self):
        return {**dataclasses.asdict(self), "channels": list(self.channels)}

    def problem(self):
        """One line naming the stage-3 key that cannot work, or ""."""
        if not self.channels or any(c < 1 for c in self.channels):
            return "--tagger_channels: need at least one channel count, each >= 1 (e.g. 16,16,32,32,64)"
        if self.input_samples < 3 ** len(self.channels):
            return (f"--tagger_input_samples={self.input_samples}: {len(self.channels)} convolutions each divide "
                    f"time by 3, so it must be at least 3^{len(self.channels)} = {3 ** len(self.channels)} "
                    f"(or pass fewer --tagger_channels)")
        if self.embedding_size < 1 or not 0 <= self.dropout < 1:
            return "--tagger_embedding_size must be >= 1 and --tagger_dropout in [0, 1)"
        return ""


def build_tagger(config):
    """The tagger (see the module docstring) as an uncompiled Keras functional model: waveform -> logits."""
    import keras
    from keras import layers

    waveform = keras.Input(shape=(config.input_samples,), dtype="float32", name="waveform")
    x = layers.Reshape((config.input_samples, 1), name="samples")(waveform)
    x = layers.Conv1D(config.channels[0], 3, strides=3, use_bias=False, name="conv0")(x)
    x = layers.ReLU(name="conv0_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name="conv0_bn")(x))
    for i, channels in enumerate(config.channels[1:], start=1):
        x = layers.Conv1D(channels, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.ReLU(name=f"block{i}_relu")(layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn")(x))
        x = layers.MaxPooling1D(3, name=f"block{i}_pool")(x)
    x = layers.Dropout(config.dropout, name="pool_dropout")(layers.GlobalAveragePooling1D(name="pool")(x))
    embedding = layers.Dense(config.embedding_size, activation="relu", name=EMBEDDING_LAYER)(x)
    logits = layers.Dense(config.n_genres, name="logits")(layers.Dropout(config.dropout, name="dropout")(embedding))
    return keras.Model(waveform, logits, name="tagger")


def readout_model(model):
    """A model giving (embeddings (B, embedding_size), logits (B, n_genres)) of a trained tagger."""
    import keras
    return keras.Model(model.inputs, [model.get_layer(EMBEDDING_LAYER).output, model.outputs[0]])


# --- windows and waveforms (numpy) ---------------------------------------------------------------------

def mu_law_table(quantization_channels=256):
    """The sample value of each code: (Q,) float32, = :func:`local.audio.mu_law_decode` of 0..Q-1."""
    from local.audio import mu_law_decode
    return mu_law_decode(np.arange(quantization_channels), quantization_channels)


def codes_to_waveform(codes, quantization_channels=256):
    """Mu-law codes (any shape, ints 0..Q-1) -> float32 samples in [-1, 1] of the same shape."""
    return mu_law_table(quantization_channels)[np.asarray(codes, dtype=np.int64)]


def window_starts(n_samples, input_samples, max_windows):
    """Starts of up to ``max_windows`` windows of ``input_samples`` spread evenly over a track: (k,) int64.

    Non-overlapping when the track holds that many; one window at 0 when it is shorter than a window
    (:func:`track_windows` pads it). The same track always gives the same starts.
    """
    count = max(1, min(int(max_windows), int(n_samples) // int(input_samples)))
    last = max(0, int(n_samples) - int(input_samples))
    return np.unique(np.linspace(0, last, num=count).round().astype(np.int64))


def track_windows(codes, input_samples, max_windows, quantization_channels=256):
    """The windows of one track's codes (:func:`window_starts`): (k, input_samples) int32; a track shorter
    than a window is padded with the silence code (Q // 2)."""
    codes = np.asarray(codes)
    if len(codes) < input_samples:
        codes = np.concatenate([codes, np.full(input_samples - len(codes), quantization_channels // 2, codes.dtype)])
    starts = window_starts(len(codes), input_samples, max_windows)
    return codes[starts[:, None] + np.arange(input_samples)[None, :]].astype(np.int32)


def softmax(logits):
    """Softmax over the last axis, float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def analyze(readout, code_arrays, *, input_samples, max_windows, quantization_channels=256, batch_windows=32,
            progress=None):
    """Window embeddings and genre probabilities of several code arrays (tracks or clips).

    readout      :func:`readout_model` of a tagger
    code_arrays  a list of (n_i,) int code arrays
    Returns a list, one per array, of (embeddings (k_i, embedding_size) float32, probabilities (k_i, n_genres)
    float64) over its windows (:func:`track_windows`). Every forward pass has ``batch_windows`` rows (the last
    padded), so the graph is traced once.
    """
    windows = [track_windows(c, input_samples, max_windows, quantization_channels) for c in code_arrays]
    flat = np.concatenate(windows) if windows else np.zeros((0, input_samples), np.int32)
    table = mu_law_table(quantization_channels)
    embeddings, logits = [], []
    for first in range(0, len(flat), batch_windows):
        batch = flat[first:first + batch_windows]
        padded = np.concatenate([batch, np.repeat(batch[-1:], batch_windows - len(batch), axis=0)])
        e, z = readout.predict_on_batch(table[padded])
        embeddings.append(np.asarray(e)[:len(batch)])
        logits.append(np.asarray(z)[:len(batch)])
        if progress is not None:
            progress.update(len(batch))
    embeddings = np.concatenate(embeddings) if embeddings else np.zeros((0, 1), np.float32)
    probabilities = softmax(np.concatenate(logits)) if logits else np.zeros((0, 1))
    bounds = np.cumsum([0] + [len(w) for w in windows])
    return [(embeddings[a:b].astype(np.float32), probabilities[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def track_predictions(readout, rows, read_codes, *, input_samples, max_windows, quantization_channels=256):
    """Mean window probabilities of each dataset row: (len(rows), n_genres) float64, a few tracks at a time."""
    out = []
    for first in range(0, len(rows), 8):
        codes = [read_codes(row) for row in rows[first:first + 8]]
        out += [p.mean(axis=0) for _, p in analyze(readout, codes, input_samples=input_samples,
                                                   max_windows=max_windows,
                                                   quantization_channels=quantization_channels)]
    return np.asarray(out).reshape(len(rows), -1)


def accuracy_report(rows, probabilities, genres):
    """Track-level accuracy of ``probabilities`` (n, G) against the rows' ``genre_id``: a dict with
    ``accuracy``, ``n_tracks``, ``per_genre`` ({genre: {accuracy, n_tracks}}) and ``tracks`` (each track's
    predicted genre and its probability)."""
    truth = np.asarray([int(r["genre_id"]) for r in rows], np.int64)
    predicted = probabilities.argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    per_genre = {}
    for g, name in enumerate(genres):
        mask = truth == g
        if mask.any():
            per_genre[name] = {"accuracy": float((predicted[mask] == g).mean()), "n_tracks": int(mask.sum())}
    return {"accuracy": float((predicted == truth).mean()) if len(rows) else None, "n_tracks": len(rows),
            "per_genre": per_genre,
            "tracks": [{"track_id": str(r["track_id"]), "genre": r["genre"], "predicted": genres[int(p)],
                        "probability": float(probabilities[k, int(p)])}
                       for k, (r, p) in enumerate(zip(rows, predicted))]}


def majority_baseline(rows, genres):
    """(genre, accuracy): the best any constant answer does on ``rows`` (the most common genre among them)."""
    if not rows:
        return None, None
    counts = np.bincount([int(r["genre_id"]) for r in rows], minlength=len(genres))
    return genres[int(counts.argmax())], float(counts.max() / counts.sum())


# --- model.json ----------------------------------------------------------------------------------------

def write_model_json(run_dir, config, *, genres, sample_rate, quantization_channels, data_dir, preprocessing):
    """``run_dir/model.json`` of a tagger run: kind, model settings, genres, sample rate, input length, the
    dataset, and stage 2's decode settings (so files are tagged exactly as the dataset was made)."""
    from local.fileio import write_json_atomic
    data = {"kind": KIND, "model": config.to_dict(), "genres": list(genres), "sample_rate": int(sample_rate),
            "quantization_channels": int(quantization_channels), "input_samples": int(config.input_samples),
            "data_dir": str(data_dir), "preprocessing": preprocessing}
    return write_json_atomic(os.path.join(run_dir, "model.json"), data)


def run_kind(info):
    """The kind of model a run's model.json describes: ``wavenet`` (runs older than the tagger) or ``tagger``."""
    return info.get("kind", "wavenet")


def preprocessing_settings(dataset_info):
    """Stage 2's decode settings from a dataset.json dict: the kwargs of codes_from_samples after the audio."""
    return {"sample_rate": int(dataset_info["sample_rate"]),
            "quantization_channels": int(dataset_info["quantization_channels"]),
            "trim_silence": bool(dataset_info.get("trim_silence", True)),
            "silence_threshold": float(dataset_info.get("silence_threshold_db", 60.0)),
            "min_seconds": float(dataset_info.get("min_seconds", 1.0))}


# --- training ------------------------------------------------------------------------------------------

def make_train_step(model, optimizer):
    """A compiled ``step(waveform (B, L) float32, genre_id (B,) int32) -> (loss in nats, window accuracy)``."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def train_step(waveform, genre_id):
        with tf.GradientTape() as tape:
            logits = model(waveform, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=genre_id, logits=logits))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), genre_id)
        return loss, tf.reduce_mean(tf.cast(hits, tf.float32))

    return train_step


def evaluate_windows(model, waveforms, genre_ids, batch_size):
    """(mean loss in nats, accuracy) of fixed windows: waveforms (n, L) float32, genre_ids (n,) int."""
    losses, hits = [], []
    for first in range(0, len(genre_ids), batch_size):
        logits = np.asarray(model.predict_on_batch(waveforms[first:first + batch_size]), np.float64)
        p = softmax(logits)
        y = genre_ids[first:first + batch_size]
        losses += list(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
        hits += list(p.argmax(axis=1) == y)
    return float(np.mean(losses)), float(np.mean(hits))


def plot_metrics(run_dir, n_genres):
    """Redraw ``run_dir/loss.png`` from a tagger's metrics.csv (train and valid cross-entropy in nats)."""
    from local import training
    from local.plots import plot_loss
    rows = training.read_metrics(run_dir)
    train = [(r["step"], r["train_loss"]) for r in rows if not math.isnan(r.get("train_loss", math.nan))]
    valid = [(r["step"], r["valid_loss"]) for r in rows if not math.isnan(r.get("valid_loss", math.nan))]
    return plot_loss([s for s, _ in train], [v for _, v in train], [s for s, _ in valid], [v for _, v in valid],
                     os.path.join(run_dir, "loss.png"), baseline_bits=math.log(max(n_genres, 1)),
                     ylabel="cross-entropy (nats)", title="Genre tagger loss",
                     baseline_label=f"chance (ln {n_genres})")


def train_from_config(config):
    """Stage 3 with ``model=tagger``: train a tagger on ``config['data_dir']`` into ``config['run_dir']``.

    Resumes from the run's latest checkpoint; writes config.json, model.json, model.keras, checkpoints/,
    metrics.csv (step, train_loss, train_window_accuracy, valid_loss, valid_window_accuracy, ...), loss.png,
    tensorboard/ and, at the end, evaluation.json (track-level accuracy). Stops with one line on bad input.
    """
    from local import dataset, dataset_store, training
    from local.config import fail, save_config
    data_dir, run_dir = config["data_dir"], config["run_dir"]
    steps, batch_size = int(config["tagger_steps"]), int(config["tagger_batch_size"])
    if steps < 0 or batch_size < 1 or config["tagger_eval_windows"] < 1:
        fail("--tagger_steps must be >= 0, --tagger_batch_size and --tagger_eval_windows >= 1")
    for key in ("eval_every", "checkpoint_every", "keep_checkpoints", "cache_tracks", "prefetch_batches",
                "valid_windows"):
        if config[key] < 1:
            fail(f"--{key}={config[key]}: must be at least 1")
    if config["learning_rate"] <= 0 or config["grad_clip"] < 0:
        fail("--learning_rate must be > 0 and --grad_clip >= 0")
    info = dataset_store.read_dataset_json(data_dir)
    if info is None or not dataset_store.list_parts(data_dir):
        fail(f"data_dir={data_dir!r} holds no processed dataset (dataset.json and tracks/part-*.parquet): "
             f"run run_transformation_scripts.py first or pass --data_dir=FOLDER")
    genres, sample_rate, n_codes = list(info["genres"]), int(info["sample_rate"]), int(info["quantization_channels"])
    tagger_config = TaggerConfig.from_stage_config(config, len(genres))
    if tagger_config.problem():
        fail(tagger_config.problem())
    length = tagger_config.input_samples
    index = dataset_store.read_index(data_dir)
    # receptive_field=1, window=L: the WaveNet's reader then yields windows of exactly L codes (its targets unused)
    train_rows, _ = dataset.usable_tracks(dataset.split_tracks(index, "train"), 1, length)
    valid_rows, _ = dataset.usable_tracks(dataset.split_tracks(index, "valid"), 1, length)
    if not train_rows or not valid_rows:
        fail(f"{data_dir}: a tagger needs train and valid tracks longer than --tagger_input_samples={length} "
             f"samples ({length / sample_rate:.2f} s); it has {len(train_rows)} train and {len(valid_rows)} valid")
    if len({r["genre_id"] for r in train_rows}) < 2:
        fail(f"{data_dir}: its train tracks are all of one genre: a tagger needs at least two")

    os.makedirs(run_dir, exist_ok=True)
    training.remove_stale_temps(run_dir)
    checkpoint = training.latest_checkpoint(run_dir)
    if checkpoint and run_kind(training.read_model_json(run_dir)) != KIND:
        fail(f"run_dir={run_dir!r} holds a {run_kind(training.read_model_json(run_dir))} run: pass another --run_dir")
    conflict = training.resume_conflict(run_dir, tagger_config.to_dict())
    if conflict:
        fail(conflict)

    import keras
    import tensorflow as tf
    from tqdm import tqdm

    seed = int(config["seed"])
    keras.utils.set_random_seed(seed)
    model = build_tagger(tagger_config)
    optimizer = training.make_optimizer(config["learning_rate"], config["grad_clip"])
    state = {"step": 0, "examples_done": 0}
    if checkpoint:
        state = training.load_checkpoint(checkpoint[1], model, optimizer)
        print(f"resuming {run_dir} from step {state['step']} ({checkpoint[1]})")
    training.truncate_metrics(run_dir, state["step"])
    save_config(config, run_dir)
    write_model_json(run_dir, tagger_config, genres=genres, sample_rate=sample_rate, quantization_channels=n_codes,
                     data_dir=data_dir, preprocessing=preprocessing_settings(info))

    table = tf.constant(mu_law_table(n_codes))
    stream = dataset.TrainStream(train_rows, 1, length, batch_size, seed=seed, cache_tracks=config["cache_tracks"])
    batches = iter(dataset.to_tf_dataset(stream, state["examples_done"], config["prefetch_batches"])
                   .map(lambda features, _: (tf.gather(table, features["codes"]), features["genre_id"])))
    valid_features, _ = dataset.validation_set(valid_rows, 1, length, config["valid_windows"])
    valid_waveforms = codes_to_waveform(valid_features["codes"], n_codes)
    valid_genres = valid_features["genre_id"].astype(np.int64)
    train_step = make_train_step(model, optimizer)
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
    print(f"tagger: {model.count_params():,} parameters, windows of {length} samples ({length / sample_rate:.2f} s), "
          f"{len(train_rows)} train / {len(valid_rows)} valid tracks, {len(valid_genres)} valid windows, "
          f"genres: {', '.join(genres)}")

    step, losses, hits = state["step"], [], []
    progress = tqdm(total=steps, initial=step, unit="step", dynamic_ncols=True, disable=step >= steps)
    interval_start = time.perf_counter()
    started = interval_start - state.get("elapsed_seconds", 0.0)
    while step < steps:
        optimizer.learning_rate.assign(training.learning_rate_at(
            step, config["learning_rate"], config["lr_schedule"], config["warmup_steps"], steps,
            config["min_learning_rate"]))
        try:
            waveform, genre_id = next(batches)
        except tf.errors.OpError as e:
            progress.close()
            fail(f"reading {data_dir} failed: {e.message.strip().splitlines()[-1]}", status=1)
        loss, accuracy = train_step(waveform, genre_id)
        losses.append(float(loss))
        hits.append(float(accuracy))
        step += 1
        state["examples_done"] += batch_size
        progress.update(1)
        if step % config["eval_every"] == 0 or step == steps:
            seconds = time.perf_counter() - interval_start
            valid_loss, valid_accuracy = evaluate_windows(model, valid_waveforms, valid_genres, batch_size)
            row = {"step": step, "train_loss": float(np.mean(losses)), "train_window_accuracy": float(np.mean(hits)),
                   "valid_loss": valid_loss, "valid_window_accuracy": valid_accuracy,
                   "samples_per_second": len(losses) * batch_size * length / max(seconds, 1e-9),
                   "learning_rate": float(optimizer.learning_rate.numpy()),
                   "elapsed_seconds": time.perf_counter() - started}
            training.append_metrics(run_dir, row)
            plot_metrics(run_dir, len(genres))
            with writer.as_default(step=step):
                for key in ("train_loss", "train_window_accuracy", "valid_loss", "valid_window_accuracy",
                            "samples_per_second", "learning_rate"):
                    tf.summary.scalar(key, row[key])
            writer.flush()
            progress.write(f"step {step}: train loss {row['train_loss']:.3f}, valid loss {valid_loss:.3f}, "
                           f"valid window accuracy {valid_accuracy:.2f}")
            losses, hits, interval_start = [], [], time.perf_counter()
        if step % config["checkpoint_every"] == 0 or step == steps:
            saved_at = time.perf_counter()
            training.save_checkpoint(run_dir, step, model, optimizer,
                                     {"examples_done": state["examples_done"], "seed": seed, "config": config,
                                      "elapsed_seconds": time.perf_counter() - started},
                                     keep=config["keep_checkpoints"])
            training.save_model(model, run_dir)
            interval_start += time.perf_counter() - saved_at
    progress.close()
    if not os.path.isfile(os.path.join(run_dir, "model.keras")):
        training.save_model(model, run_dir)
    result = write_evaluation(run_dir, model, index, genres, data_dir=data_dir, input_samples=length,
                              max_windows=config["tagger_eval_windows"], quantization_channels=n_codes)
    print_evaluation(result, run_dir)
    return result


def write_evaluation(run_dir, model, index, genres, *, data_dir, input_samples, max_windows,
                     quantization_channels=256):
    """Track-level accuracy on the valid and test tracks into ``run_dir/evaluation.json``; returns the dict.

    ``majority_baseline`` = the test accuracy of always answering the test set's most common genre: the
    best a model that ignores the audio could do (stricter than the train set's most common genre).
    """
    from local import dataset, dataset_store
    from local.fileio import write_json_atomic
    readout = readout_model(model)

    def read(row):
        return dataset_store.read_codes(row["part"], row["row_group"], row.get("row_in_group", 0))

    reports = {}
    for split in ("valid", "test"):
        rows = [r for r in dataset.split_tracks(index, split) if r["genre"] in genres]
        probabilities = track_predictions(readout, rows, read, input_samples=input_samples, max_windows=max_windows,
                                          quantization_channels=quantization_channels)
        reports[split] = accuracy_report(rows, probabilities, genres)
    majority_genre, majority = majority_baseline([r for r in index if r["split"] == "test" and r["genre"] in genres],
                                                 genres)
    result = {"test_accuracy": reports["test"]["accuracy"], "valid_accuracy": reports["valid"]["accuracy"],
              "majority_baseline": majority, "majority_genre": majority_genre,
              "n_test_tracks": reports["test"]["n_tracks"], "n_valid_tracks": reports["valid"]["n_tracks"],
              "per_genre": reports["test"]["per_genre"], "valid_per_genre": reports["valid"]["per_genre"],
              "test_tracks": reports["test"]["tracks"], "windows_per_track": int(max_windows),
              "data_dir": str(data_dir)}
    write_json_atomic(os.path.join(run_dir, "evaluation.json"), result)
    return result


def print_evaluation(result, run_dir):
    """The track-level accuracies as a short table."""
    def show(value):
        return "-" if value is None else f"{value:.2f}"
    print(f"\ntrack-level genre accuracy (mean of up to {result['windows_per_track']} windows per track)")
    print(f"  test  {show(result['test_accuracy'])} on {result['n_test_tracks']} tracks "
          f"(majority baseline {show(result['majority_baseline'])}: always {result['majority_genre']})")
    print(f"  valid {show(result['valid_accuracy'])} on {result['n_valid_tracks']} tracks")
    for genre, entry in result["per_genre"].items():
        print(f"  test {genre:<20}{entry['accuracy']:.2f} on {entry['n_tracks']} tracks")
    print(os.path.join(run_dir, "evaluation.json"), file=sys.stdout)
