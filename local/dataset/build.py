"""Stage 2's pipeline: decode the inputs in a pool of processes, plan each track's genre and split, write the
dataset's parts, say what happened. ``run_transformation_scripts.py`` calls :func:`preprocess`; the Spark twin
calls the same planning functions.
"""
import dataclasses
import os
import sys

from local.audio import decoding
from local.core import locks
from local.dataset.inputs import SourceFingerprints, input_path_problem, list_inputs
from local.dataset.settings import INDEX_WITH_RATE, check_same_settings, part_metadata, stage_settings
from local.core.fileio import read_json, write_json_atomic
from local.dataset.splits import (ensure_every_split_per_genre, hash_split, keep_same_audio_in_one_split,
                                  resplit_usable)
from local.store import dataset_files as store
from local.store import manifest


SPLITS_PENDING_NAME = ".splits-pending.json"  # {"track_ids": [...]}: rows whose split a killed run left planned


def split_written_rows(out_dir, written, index, inputs, changed, pending, splits):
    """Give the rows a run wrote (and those a killed run wrote, ``pending`` ids) the splits of
    :func:`local.dataset.splits.resplit_usable`, rewriting only the parts whose rows move
    (:func:`local.store.dataset_files.set_splits`).

    ``written``: this run's planned items whose rows were written; ``index``: the dataset's rows from before
    the run; ``inputs``: every input listed (genres unified); ``changed``: ids whose old row this run replaced.
    """
    listed = {item["track_id"]: item for item in inputs}
    earlier = [dict(listed[r["track_id"]], split=r["split"], split_from_source=bool(listed[r["track_id"]]["split"]))
               for r in index if r["track_id"] in pending and r["track_id"] in listed and r["track_id"] not in changed]
    moving = set(changed) | {item["track_id"] for item in earlier}
    moves = resplit_usable(list(written) + earlier, [r for r in index if r["track_id"] not in moving], splits)
    if moves:  # planned valid/test tracks failed to decode: the usable ones are split again
        store.set_splits(out_dir, moves)
    return moves


def process_batch_star(args):
    return decoding.process_batch(*args)


def batches(items, size_of, max_files=8, max_bytes=8 << 20):
    """Group ``items`` for :func:`decoding.process_batch`: at most ``max_files`` each and, past the first, about
    ``max_bytes`` of input (``size_of(item)`` bytes; the decoded audio of a batch is held at once)."""
    batch, batch_bytes = [], 0
    for item in items:
        item_bytes = size_of(item)
        if batch and (len(batch) >= max_files or batch_bytes + item_bytes > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(item)
        batch_bytes += item_bytes
    if batch:
        yield batch


def run_inputs(inputs, settings, workers=1, progress=True):
    """Yield :func:`decoding.process_batch` results for ``inputs``, in batches over a pool of ``workers`` processes,
    with a progress bar."""
    from tqdm import tqdm
    bar = tqdm(total=len(inputs), desc="preprocess", unit="track", disable=not progress, file=sys.stderr)
    per_batch = max(1, min(8, -(-len(inputs) // max(1, 2 * workers))))  # enough batches to keep all busy
    jobs = [(batch, settings) for batch in batches(inputs, decoding.file_size, max_files=per_batch)]

    def hand_over(results):  # keeps no reference: a long track's codes are freed before the next one is decoded
        results.reverse()
        while results:
            yield results.pop()
            bar.update()
    if workers <= 1:
        for job in jobs:
            yield from hand_over(decoding.process_batch(*job))
    else:
        import multiprocessing
        with multiprocessing.Pool(workers) as pool:
            # in input order (sorted by genre): a new genre gets its id when its first track is kept
            for results in pool.imap(process_batch_star, jobs, chunksize=1):
                yield from hand_over(results)
    bar.close()


def assign_genre_ids(known_genres, new_genres):
    """Genres list (index = genre_id): the known ones in their order, then new ones sorted."""
    genres = list(known_genres)
    genres += sorted(set(new_genres) - set(genres))
    return genres


def plan_tracks(inputs, index, recorded_genres, splits, sha_of):
    """Decide what a run does; shared by the local stage and the Spark job, so both split alike.

    Parameters
    ----------
    inputs : list of input dicts (:func:`list_inputs`)
    index : the index rows of the dataset so far (each with ``track_id``, ``genre``, ``genre_id``,
        ``source_sha256``)
    recorded_genres : the ``genres`` list of its dataset.json ([] if none)
    splits : SplitSettings
    sha_of : function(item) -> the sha256 of the item's file ("" if missing); called only for tracks
        already in the dataset

    Returns a dict: ``todo`` (the inputs to process, each with ``split`` and ``split_from_source``),
    ``skipped`` (count of unchanged tracks), ``changed`` (track ids whose old row must go before the new
    one is written), ``genres`` (the genres of the rows kept, index = genre_id; the new genres join it with
    :func:`genres_with_data` once a track of theirs is kept). ``todo`` is sorted by genre, so a runner
    that appends a new genre when its first track is kept gives the ids :func:`genres_with_data` gives.
    """
    existing = {r["track_id"]: r for r in index}
    inputs = unify_genres(inputs, known_genres(index, recorded_genres))
    todo, skipped = [], 0
    for item in inputs:
        old = existing.get(item["track_id"])
        if old is not None:
            sha = sha_of(item)
            if sha == old.get("source_sha256"):
                skipped += 1
                continue
            item = dict(item, sha256=sha)
        todo.append(dict(item))
    changed = [i["track_id"] for i in todo if i["track_id"] in existing]
    kept = {k: v for k, v in existing.items() if k not in set(changed)}
    for item in todo:
        item["split_from_source"] = bool(item["split"])
        if not item["split"]:
            item["split"] = hash_split(item["track_id"], splits.valid_fraction, splits.test_fraction,
                                       splits.split_seed)
    ensure_every_split_per_genre(todo, kept.values(), splits.split_seed)
    same_audio = keep_same_audio_in_one_split(todo, kept.values())
    # genres with data only: those of the rows kept (ids stable); a new genre gets its id once a track of it
    # is kept (see genres_with_data), in sorted order
    genres = assign_genre_ids(known_genres(existing.values(), recorded_genres) if kept else [],
                              [r["genre"] for r in kept.values()])
    return {"todo": sorted(todo, key=lambda item: item["genre"]), "skipped": skipped, "changed": changed,
            "genres": genres, "same_audio": same_audio}


def unify_genres(inputs, known=()):
    """``inputs`` (copies) with one spelling per genre: names equal but for case and spacing
    (:func:`local.store.manifest.genre_key`: "Rock", "rock", "ROCK ") become one genre - the spelling a ``known``
    genre (the dataset's) has, else the first in sorted order of those not all in lower or upper case."""
    spelling = {}
    for genre in known:
        if genre:
            spelling.setdefault(manifest.genre_key(genre), genre)
    variants = {}
    for item in inputs:
        variants.setdefault(manifest.genre_key(item["genre"]), set()).add(manifest.tidy_genre(item["genre"]))
    for key, names in variants.items():
        spelling.setdefault(key, min(names, key=lambda n: (n in (n.lower(), n.upper()), n)))
    return [dict(item, genre=spelling[manifest.genre_key(item["genre"])]) for item in inputs]


def genres_with_data(plan_genres, kept_genres):
    """The dataset's genres list (index = genre_id): the plan's (those of the rows already there, ids kept),
    then the new genres among ``kept_genres`` (those with at least one track kept this run), sorted. Never
    a genre without a track: a conditioned model would have a genre it never saw."""
    return assign_genre_ids(plan_genres, kept_genres)


def known_genres(index_rows, recorded=()):
    """The genres list (index = genre_id) that the rows already written use.

    The rows are the truth (``dataset.json`` may be missing or stale after a killed run); ``recorded``, the
    list from ``dataset.json``, fills ids no row uses any more.
    """
    genres = list(recorded)
    for row in index_rows:
        genre_id = int(row["genre_id"])
        genres += [""] * (genre_id + 1 - len(genres))
        genres[genre_id] = row["genre"]
    return genres


def track_row(item, track, genres, sample_rate):
    """The dataset row (:data:`local.store.dataset_files.TRACK_SCHEMA` columns) of a processed input."""
    return {"track_id": item["track_id"], "genre": item["genre"], "genre_id": genres.index(item["genre"]),
            "split": item["split"], "sample_rate": int(sample_rate), "n_samples": int(track["n_samples"]),
            "codes": track["codes"], "source_path": item["path"], "source_sha256": item["sha256"]}


def dataset_info(index, genres, settings, splits):
    """The ``dataset.json`` dict for the dataset's index rows and the settings that made it."""
    return store.summarize(index, settings.sample_rate, settings.quantization_channels, genres, extra={
        "trim_silence": settings.trim_silence, "silence_threshold_db": settings.silence_threshold_db,
        "min_seconds": settings.min_seconds, **dataclasses.asdict(splits)})


def split_refused(raw_dir, inputs, problem=None):
    """(inputs stage 2 may open, [(path, reason)] of those it must not): :func:`input_path_problem` by
    default (a local raw_dir); ``problem(path)`` for another one (the Spark job's URIs)."""
    problem = problem or (lambda path: input_path_problem(raw_dir, path))
    usable, refused = [], []
    for item in inputs:
        reason = item.get("refused") or manifest.name_problem(item["path"]) or problem(item["path"])
        if reason:
            refused.append((manifest.printable_path(item["path"]), reason))
        else:
            usable.append(item)
    return usable, refused


def preprocess(raw_dir, out_dir, *, workers=1, rows_per_part=64, progress=True, **dataset_keys):
    """Stage 2: turn the audio under ``raw_dir`` into the Parquet dataset in ``out_dir``.

    ``dataset_keys``: the :data:`DATASET_KEYS` as in the config (``sample_rate=16000``, ``silence_threshold=60.0``,
    ...; one not given keeps its default). ``workers``: decoding processes; ``rows_per_part``: tracks per part.
    Idempotent: a track already in the dataset whose file is unchanged (size + mtime as recorded in
    ``source_stats.json``, else the file's sha256 - never the manifest's claim) is skipped; a changed file
    replaces its old row. One writer at a time (``local.core.locks``: a second run on ``out_dir`` raises LockHeld).
    Inputs resolving outside ``raw_dir`` and special files are refused (listed in failures.csv). Returns the
    summary dict :func:`summary_lines` prints: processed, skipped, failed [(path, reason)], warnings
    [(path, text)], dataset (the dataset.json dict), out_dir, failures_csv, decoded_with_libsndfile.
    """
    with locks.acquire_lock(out_dir, "stage 2"):  # a second writer is refused, never merged
        return preprocess_locked(raw_dir, out_dir, workers=workers, rows_per_part=rows_per_part, progress=progress,
                                 **dataset_keys)


def preprocess_locked(raw_dir, out_dir, *, workers=1, rows_per_part=64, progress=True, on_checked=None,
                      **dataset_keys):
    """:func:`preprocess` while holding ``out_dir``'s lock; ``on_checked()`` (the runner saving its config.json)
    is called once ``out_dir`` is known to take these settings, before anything is written."""

    settings, splits = stage_settings(**dataset_keys)
    try:
        info = store.read_dataset_json(out_dir) or {}
    except store.DamagedFile:  # the rows are the truth: it is rewritten from them at the end
        info = {}
    index = store.read_index(out_dir, columns=INDEX_WITH_RATE)
    check_same_settings(out_dir, info, index, settings)
    if on_checked is not None:
        on_checked()
    store.remove_stale_temps(out_dir)
    inputs, failed = split_refused(raw_dir, list_inputs(raw_dir))
    fingerprints = SourceFingerprints(out_dir)
    plan = plan_tracks(inputs, index, info.get("genres", []), splits, lambda item: fingerprints.sha_of(item["path"]))
    if plan["changed"]:  # the input file changed since it was processed: its old row goes, the new one comes
        store.drop_tracks(out_dir, plan["changed"])

    # the rows of this run (and of a killed one) carry planned splits until resplit_usable has seen them all
    pending_path = os.path.join(out_dir, SPLITS_PENDING_NAME)
    pending = set(read_json(pending_path, {}).get("track_ids", [])) - set(plan["changed"])
    if plan["todo"] or pending:
        write_json_atomic(pending_path, {"track_ids": sorted(pending | {i["track_id"] for i in plan["todo"]})})
    warnings, genres, processed, with_libsndfile, written = list(plan["same_audio"]), list(plan["genres"]), 0, 0, []
    with store.PartWriter(out_dir, rows_per_part=rows_per_part, metadata=part_metadata(settings)) as writer:
        for item, track, reason in run_inputs(plan["todo"], settings, workers, progress):
            if track is None:
                failed.append((item["path"], reason))
                continue
            if track["warning"]:
                warnings.append((item["path"], track["warning"]))
            genres = genres_with_data(genres, [item["genre"]])  # in genre order: the ids genres_with_data gives
            writer.write(track_row(item, track, genres, settings.sample_rate))
            written.append(item)
            fingerprints.remember(item["path"], item.get("stat"), item["sha256"])
            processed += 1
            with_libsndfile += track.get("decoder") == decoding.LIBSNDFILE
            if len(track["codes"]) > decoding.MMAP_THRESHOLD_BYTES:  # (with a pool, long tracks' codes arrive here too)
                decoding.keep_large_blocks_mapped()
            del track  # its codes go now, not after the next input is decoded
    fingerprints.save()
    split_written_rows(out_dir, written, index, unify_genres(inputs, known_genres(index, info.get("genres", []))),
                       plan["changed"], pending, splits)
    if os.path.exists(pending_path):
        os.remove(pending_path)

    dataset = dataset_info(store.read_index(out_dir), genres, settings, splits)
    _, failures_csv = store.write_dataset_files(out_dir, dataset, failed)
    return {"processed": processed, "skipped": plan["skipped"], "failed": failed, "warnings": warnings,
            "dataset": dataset, "out_dir": out_dir, "failures_csv": failures_csv,
            "decoded_with_libsndfile": with_libsndfile}


def summary_lines(summary):
    """What a stage-2 runner prints at the end of a run, from its summary dict (see :func:`preprocess`)."""
    dataset = summary["dataset"]
    lines = [f"warning: {path}: {text}" for path, text in summary["warnings"]]
    lines += [f"skipped: {path}: {reason}" for path, reason in summary["failed"]]
    lines.append(f"{summary['processed']} tracks processed, {summary['skipped']} already done, "
                 f"{len(summary['failed'])} failed (see {summary['failures_csv']})")
    if summary.get("decoded_with_libsndfile"):
        lines.append(f"{summary['decoded_with_libsndfile']} of them refused by ffmpeg and decoded with libsndfile")
    if summary.get("decode_core_seconds"):  # what sizing a cluster needs: divide by the cores you will have
        lines.append(f"decoding took {summary['decode_core_seconds']:.1f} core-seconds for "
                     f"{summary['processed'] + len(summary['failed'])} files")
    lines.append(f"dataset: {summary['out_dir']}  {dataset['n_tracks']} tracks, "
                 f"{dataset['n_samples'] / dataset['sample_rate'] / 60:.1f} min; train/valid/test tracks = "
                 f"{dataset['tracks']['train']}/{dataset['tracks']['valid']}/{dataset['tracks']['test']}; "
                 f"genres: {', '.join(dataset['genres'])}")
    return lines
