"""Training the genre tagger: its task on raw waveforms or on pretrained features, balanced batches, and
its evaluation on the valid and test tracks.
"""
import sys

import numpy as np

from local.core.config import StageError
from local.core.fileio import write_json_atomic
from local.dataset import windows as dataset
from local.judge.tagger_features import MAX_PATCHES, dataset_features, spread
from local.model.tagger import (
    WINDOWS_PER_VISIT,
    build_head,
    build_tagger,
    codes_to_waveform,
    mu_law_table,
    readout_features,
    readout_model,
    softmax,
    track_predictions,
)
from local.store import dataset_files
from local.store.layout import RunDir
from local.train import loop, runner


def accuracy_report(rows, probabilities, genres):
    """Track-level accuracy of ``probabilities`` (n, G) against the rows' ``genre_id``: a dict with
    ``accuracy``, ``n_tracks``, ``balanced_accuracy`` (the mean of the per-genre accuracies, i.e. of each genre's
    recall: a constant answer scores 1 / number of genres), ``per_genre`` ({genre: {accuracy, n_tracks}}) and ``tracks`` (each track's
    predicted genre and its probability)."""
    truth = np.asarray([int(r["genre_id"]) for r in rows], np.int64)
    predicted = probabilities.argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    per_genre = {}
    for g, name in enumerate(genres):
        mask = truth == g
        if mask.any():
            per_genre[name] = {"accuracy": float((predicted[mask] == g).mean()), "n_tracks": int(mask.sum())}
    return {"accuracy": float((predicted == truth).mean()) if len(rows) else None, "n_tracks": len(rows),
            "balanced_accuracy": float(np.mean([e["accuracy"] for e in per_genre.values()])) if per_genre else None,
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


def balanced_patch_batches(train, batch_size, seed, examples_done=0):
    """Yield batches of train patches forever, every genre equally often: (features (B, D) float32, genre_id (B,)
    int32). ``train``: a list of (genre_id, (k, D) patch features) per track. Example ``i`` of the stream is of
    the ``i mod n_genres``-th genre, from a random track of it and a random patch of that track; batch ``b`` is
    drawn from its own seed, so the stream is a pure function of (seed, examples_done)."""
    by_genre = {}
    for genre_id, patches in train:
        by_genre.setdefault(int(genre_id), []).append(patches)
    genre_ids = sorted(by_genre)
    number = int(examples_done) // batch_size
    while True:
        rng = np.random.default_rng([seed, 5, number])
        slots = (number * batch_size + np.arange(batch_size)) % len(genre_ids)
        batch = []
        for slot in slots:
            tracks = by_genre[genre_ids[slot]]
            patches = tracks[int(rng.integers(len(tracks)))]
            batch.append(patches[int(rng.integers(len(patches)))])
        yield np.stack(batch).astype(np.float32), np.asarray([genre_ids[s] for s in slots], np.int32)
        number += 1


def head_task(tagger_config, *, train, valid, config):
    """The transfer-mode tagger's :class:`local.train.loop.Task`: the head (:func:`build_head`, seeded by
    ``config["seed"]``), Adam, genre-balanced batches of train patches (:func:`balanced_patch_batches`) and every
    valid patch for validation. ``train`` / ``valid``: lists of (genre_id, (k, D) features) per track."""
    import keras
    import tensorflow as tf

    batch_size = config["tagger_batch_size"]
    keras.utils.set_random_seed(config["seed"])
    model = build_head(tagger_config)
    optimizer = loop.make_optimizer(config["learning_rate"], config["grad_clip"])
    valid_features = np.concatenate([p for _, p in valid]).astype(np.float32)
    valid_genres = np.concatenate([np.full(len(p), g, np.int64) for g, p in valid])

    def loss_of(features, genre_id):
        logits = model(features, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=genre_id, logits=logits))

    def validate():
        bits, accuracy = evaluate_windows(model, valid_features, valid_genres, batch_size)
        return {"valid_bits_per_window": bits, "valid_window_accuracy": accuracy}

    return loop.Task(model=model, optimizer=optimizer,
                         batches=lambda done: balanced_patch_batches(train, batch_size, config["seed"], done),
                         train_step=loop.gradient_step(model, optimizer, loss_of), validate=validate,
                         batch_size=batch_size, samples_per_example=1, loss_column="train_bits_per_window",
                         valid_column="valid_bits_per_window", baseline_bits=tagger_config.chance_bits,
                         loss_title=f"Genre tagger loss ({tagger_config.features} head)",
                         loss_unit="bits per patch")


def transfer_task(tagger_config, features, *, index, genres, sample_rate, train_tracks, valid_tracks, config,
                  run_dir):
    """(Task, predict) of a transfer-mode tagger: the dataset's patch embeddings (:func:`dataset_features`,
    cached in ``run_dir/features/``), the head's task (:func:`head_task`) and ``predict(rows) -> (n, n_genres)``,
    the tracks' mean patch probabilities over up to ``tagger_eval_windows`` patches (for evaluation.json)."""
    table = dataset_features(features, [r for r in index if r["genre"] in genres], name=tagger_config.features,
                             sample_rate=sample_rate, quantization_channels=config["quantization_channels"],
                             cache_dir=RunDir(run_dir).features)
    task = head_task(tagger_config, config=config,
                     train=[(r["genre_id"], table[str(r["track_id"])]) for r in train_tracks],
                     valid=[(r["genre_id"], table[str(r["track_id"])]) for r in valid_tracks])
    readout = readout_model(task.model)

    def predict(rows):
        spread_out = [spread(table[str(r["track_id"])], config["tagger_eval_windows"]) for r in rows]
        return np.asarray([p.mean(axis=0) for _, p in readout_features(readout, spread_out)]).reshape(len(rows), -1)
    return task, predict


def training_line(tagger_config, config, sample_rate):
    """What a tagger is trained on, in words, for the line printed before training."""
    if tagger_config.pretrained:
        return (f"a head on {tagger_config.features} embeddings ({tagger_config.feature_size} per 3 s patch, up to "
                f"{MAX_PATCHES} patches per track), patches drawn with every genre equally often")
    length = tagger_config.input_samples
    drawn = "every genre equally often" if tagger_config.balanced else "as they come"
    return f"windows of {length} samples ({length / sample_rate:.2f} s) drawn {drawn}"


# --- training ---------------------------------------------------------------------------------------

def make_train_step(model, optimizer, parts=1):
    """A compiled ``step(waveform (B, L) float32, genre_id (B,) int32) -> mean cross-entropy in nats``
    (``parts``: see :func:`local.train.loop.gradient_step`)."""
    import tensorflow as tf


    def loss_of(waveform, genre_id):
        logits = model(waveform, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=genre_id, logits=logits))

    return loop.gradient_step(model, optimizer, loss_of, parts=parts)


def evaluate_windows(model, waveforms, genre_ids, batch_size):
    """(mean cross-entropy in bits, accuracy) of fixed windows: waveforms (n, L) float32, genre_ids (n,) int."""
    losses, hits = [], []
    for first in range(0, len(genre_ids), batch_size):
        p = softmax(np.asarray(model.predict_on_batch(waveforms[first:first + batch_size]), np.float64))
        y = genre_ids[first:first + batch_size]
        losses += list(-np.log2(np.maximum(p[np.arange(len(y)), y], 1e-12)))
        hits += list(p.argmax(axis=1) == y)
    return float(np.mean(losses)), float(np.mean(hits))


def usable_splits(index, input_samples, data_dir, sample_rate):
    """(train rows, valid rows) of a dataset index holding at least one window of ``input_samples``; StageError
    when a split has none or the train tracks are all of one genre."""
    # receptive_field=1, window=L: the WaveNet's reader then yields windows of exactly L codes (targets unused)
    train, valid = runner.usable_splits(index, 1, input_samples, data_dir, sample_rate,
                                          length_keys="1 + tagger_input_samples",
                                          fix="lower --tagger_input_samples")
    if len({r["genre_id"] for r in train}) < 2:
        raise StageError(f"{data_dir}: its train tracks are all of one genre: a tagger needs at least two")
    return train, valid


def tagger_task(tagger_config, *, train_tracks, valid_tracks, config):
    """The tagger's :class:`local.train.loop.Task`: the model (seeded by ``config["seed"]``), Adam, the resumable
    stream of train windows (local.dataset.windows.TrainStream, codes expanded to samples) and fixed validation windows.

    Metrics columns: ``train_bits_per_window``, ``valid_bits_per_window`` (genre cross-entropy, bits) and
    ``valid_window_accuracy``. config: the stage-3 config (tagger_batch_size, valid_windows, learning_rate,
    grad_clip, cache_tracks, prefetch_batches, seed).
    """
    import keras
    import tensorflow as tf

    length, batch_size = tagger_config.input_samples, config["tagger_batch_size"]
    n_codes = config["quantization_channels"]
    parts = min(loop.use_threads(config.get("threads", 0)), batch_size)  # before TensorFlow's thread pools
    keras.utils.set_random_seed(config["seed"])
    model = build_tagger(tagger_config)
    optimizer = loop.make_optimizer(config["learning_rate"], config["grad_clip"])
    if tagger_config.balanced:  # every genre seen equally often, whatever its tracks' total length
        stream = dataset.GenreBalancedStream(train_tracks, 1, length, batch_size, seed=config["seed"],
                                             cache_tracks=config["cache_tracks"], windows_per_visit=WINDOWS_PER_VISIT)
    else:
        stream = dataset.TrainStream(train_tracks, 1, length, batch_size, seed=config["seed"],
                                     cache_tracks=config["cache_tracks"])
    table = tf.constant(mu_law_table(n_codes))
    valid_features, _ = dataset.validation_set(valid_tracks, 1, length, config["valid_windows"])
    valid_waveforms = codes_to_waveform(valid_features["codes"], n_codes)
    valid_genres = valid_features["genre_id"].astype(np.int64)

    def batches(examples_done):
        return dataset.to_tf_dataset(stream, examples_done, config["prefetch_batches"]).map(
            lambda features, _: (tf.gather(table, features["codes"]), features["genre_id"]))

    def validate():
        bits, accuracy = evaluate_windows(model, valid_waveforms, valid_genres, batch_size)
        return {"valid_bits_per_window": bits, "valid_window_accuracy": accuracy}

    return loop.Task(model=model, optimizer=optimizer, batches=batches,
                         train_step=make_train_step(model, optimizer, parts), validate=validate, batch_size=batch_size,
                         samples_per_example=length, loss_column="train_bits_per_window",
                         valid_column="valid_bits_per_window", baseline_bits=tagger_config.chance_bits,
                         loss_title="Genre tagger loss", loss_unit="bits per window")


def figure_refused(split, rows):
    """One line saying why no figure is reported on the ``split`` tracks ``rows`` (they hold fewer than two
    genres: any answer that names their genre scores 1.0, so the figure says nothing), or "" when they can
    measure."""
    present = sorted({r["genre"] for r in rows})
    if len(present) >= 2:
        return ""
    held = f"only {present[0]} ({len(rows)} tracks)" if present else "no track"
    return (f"no {split} figure: the {split} split holds {held}, and a figure on fewer than two genres says nothing: "
            f"rerun run_transformation_scripts.py into a new --out_dir (a genre of 3+ tracks then gets a valid and a "
            f"test track) or add tracks, then train again")


def write_evaluation(run_dir, model, index, genres, *, data_dir, input_samples, max_windows,
                     quantization_channels=256, predict=None, extra=None):
    """Track-level accuracy on the valid and test tracks into ``run_dir/evaluation.json``; returns the dict.

    Per split: ``<split>_accuracy`` and ``<split>_balanced_accuracy`` (mean of per-genre recall), and the
    majority baseline of the same split: ``majority_baseline`` (test; ``valid_majority_baseline``) = the
    accuracy of always answering that split's most common genre, the best a model that ignores the audio could
    do; its balanced accuracy is 1 / the split's number of genres (``majority_balanced_baseline``). A split
    holding fewer than two genres gets no figures (None) and ``<split>_refused`` says why
    (:func:`figure_refused`). ``predict(rows) -> (n, n_genres)`` gives the tracks' genre probabilities
    (default: the mean over ``max_windows`` windows of ``model``); ``extra``: more keys to record.
    """
    if predict is None:
        readout = readout_model(model)

        def predict(rows):
            return track_predictions(readout, rows, dataset_files.read_track_codes, input_samples=input_samples,
                                     max_windows=max_windows, quantization_channels=quantization_channels)
    result = {}
    for split in ("test", "valid"):
        rows = [r for r in dataset.split_tracks(index, split) if r["genre"] in genres]
        report = accuracy_report(rows, predict(rows), genres)
        refused = figure_refused(split, rows)
        majority_genre, majority = majority_baseline(rows, genres)
        prefix = "" if split == "test" else "valid_"
        result.update({
            f"{split}_accuracy": None if refused else report["accuracy"],
            f"{split}_balanced_accuracy": None if refused else report["balanced_accuracy"],
            f"{prefix}majority_baseline": majority, f"{prefix}majority_genre": majority_genre,
            f"{prefix}majority_balanced_baseline": 1 / len(report["per_genre"]) if report["per_genre"] else None,
            f"n_{split}_tracks": report["n_tracks"], f"{split}_refused": refused,
            ("per_genre" if split == "test" else "valid_per_genre"): {} if refused else report["per_genre"]})
        if split == "test":
            result["test_tracks"] = report["tracks"]
    result.update({"windows_per_track": int(max_windows), "data_dir": str(data_dir), **(extra or {})})
    write_json_atomic(RunDir(run_dir).evaluation_json, result)
    return result


def print_evaluation(result, run_dir):
    """The track-level accuracies as a short table; one line instead for a split that cannot measure."""
    def show(value):
        return "-" if value is None else f"{value:.2f}"
    print(f"\ntrack-level genre accuracy (mean of up to {result['windows_per_track']} windows per track); balanced = "
          f"mean of per-genre recall")
    for split, prefix in (("test", ""), ("valid", "valid_")):
        if result.get(f"{split}_refused"):
            print(f"  {split:<5} {result[f'{split}_refused']}")
            continue
        print(f"  {split:<5} {show(result[f'{split}_accuracy'])} balanced {show(result[f'{split}_balanced_accuracy'])} "
              f"on {result[f'n_{split}_tracks']} tracks (majority baseline {show(result[f'{prefix}majority_baseline'])}"
              f" balanced {show(result[f'{prefix}majority_balanced_baseline'])}: always "
              f"{result[f'{prefix}majority_genre']})")
    for genre, entry in result["per_genre"].items():
        print(f"  test {genre:<20}{entry['accuracy']:.2f} on {entry['n_tracks']} tracks")
    print(RunDir(run_dir).evaluation_json, file=sys.stdout)
