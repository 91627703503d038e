"""Stage 2's steps: check the config, find the inputs (and keep their paths inside raw_dir), decode them in a
pool of processes, assign splits, write the dataset, say what happened. ``run_transformation_scripts.py`` and
``aws/spark_preprocessing.py`` both call these functions; only where the files live and who decodes them (a
process pool or Spark executors) differs. Decoding one file is local/decoding.py's (one decode path for
every caller).

Internal names carry units: ``_seconds``, ``_db``, ``_bytes``; where a size is shown to a person it is in
MB = 10**6 bytes. The config key ``silence_threshold`` is ``silence_threshold_db`` inside.
"""
import dataclasses
import hashlib
import json
import math
import os
import re
import stat
import sys

from local import checks, dataset_store as store, decoding, locks, manifest
from local.config import ConfigError
from local.fileio import read_json, write_json_atomic

# stage 2's config keys that decide the dataset's content (the rest say where and how fast)
DATASET_KEYS = ("sample_rate", "quantization_channels", "trim_silence", "silence_threshold", "min_seconds",
                "valid_fraction", "test_fraction", "split_seed")


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """How stage 2 assigns train/valid/test to a track the source gives no split."""
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0


def stage_settings(**keys):
    """Stage 2's dataset keys (:data:`DATASET_KEYS`, named as in the config) -> (decoding.DecodeSettings, SplitSettings).

    A key not given keeps its default; an unknown one raises TypeError.
    """
    unknown = sorted(set(keys) - set(DATASET_KEYS))
    if unknown:
        raise TypeError(f"not a stage-2 dataset key: {', '.join(unknown)}")
    if "silence_threshold" in keys:
        keys["silence_threshold_db"] = keys.pop("silence_threshold")

    def fields_of(cls):
        return {k: v for k, v in keys.items() if k in {f.name for f in dataclasses.fields(cls)}}
    return decoding.DecodeSettings(**fields_of(decoding.DecodeSettings)), SplitSettings(**fields_of(SplitSettings))


def dataset_keys(config):
    """The :data:`DATASET_KEYS` part of a stage-2 config, for :func:`preprocess` and its Spark twin."""
    return {key: config[key] for key in DATASET_KEYS}


def check_config(config):
    """Raise ConfigError (one line: the key, its value and what it accepts) for the first stage-2 key that
    cannot work. ``config``: the resolved config dict of either stage-2 runner."""
    valid_fraction = config["valid_fraction"]

    def finite(key):
        return isinstance(config[key], (int, float)) and math.isfinite(config[key])
    problems = (
        ("sample_rate", not decoding.MIN_SAMPLE_RATE_HZ <= config["sample_rate"] <= decoding.MAX_SAMPLE_RATE_HZ,
         f"between {decoding.MIN_SAMPLE_RATE_HZ} and {decoding.MAX_SAMPLE_RATE_HZ} Hz, like 16000"),
        ("quantization_channels", not 2 <= config["quantization_channels"] <= 256,
         "between 2 and 256 (codes are one byte)"),
        ("valid_fraction", not 0 <= valid_fraction < 1, "at least 0 and below 1"),
        ("test_fraction", not 0 <= config["test_fraction"] < 1 - valid_fraction,
         f"at least 0 and below {1 - valid_fraction:g}, so that tracks remain for training"),
        ("silence_threshold", not (finite("silence_threshold") and 0 < config["silence_threshold"] <= 120),
         "more than 0 and at most 120 dB below the peak, like 60"),
        ("min_seconds", not (finite("min_seconds") and config["min_seconds"] > 0), "more than 0 seconds, like 1"),
        ("workers", config["workers"] < 1, "1 or more"),
    )
    for key, bad, accepted in problems:
        if bad:
            raise ConfigError(f"{key}={config[key]!r} must be {accepted}")
    if checks.shared_folder_problem(config, "out_dir", "raw_dir"):
        raise ConfigError(checks.shared_folder_problem(config, "out_dir", "raw_dir"))
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", config["out_dir"]):  # a local folder (Spark may write to a URI)
        if checks.output_folder_problem(config["out_dir"], "out_dir"):
            raise ConfigError(checks.output_folder_problem(config["out_dir"], "out_dir"))


def check_raw_dir(raw_dir, hint="FOLDER"):
    """Raise ConfigError when the local folder ``raw_dir`` is a file, is missing or holds no audio file."""
    if checks.input_folder_problem(raw_dir, "raw_dir"):
        raise ConfigError(checks.input_folder_problem(raw_dir, "raw_dir"))
    if not os.path.isdir(raw_dir):
        raise ConfigError(f"raw_dir={raw_dir!r} does not exist: run run_webscraper.py first or pass --raw_dir={hint}")
    if not list_inputs(raw_dir):
        raise ConfigError(f"raw_dir={raw_dir!r} holds no audio files: run run_webscraper.py first or pass "
                          f"--raw_dir={hint}")


INDEX_WITH_RATE = ["track_id", "genre", "genre_id", "split", "n_samples", "source_sha256", "source_path",
                   "sample_rate"]  # the index columns stage 2 reads: the rows' own rate is checked too
SETTINGS_METADATA_KEY = b"waveforms.settings"  # the Parquet key-value metadata each part carries


def part_settings(settings):
    """The settings every row of a dataset must share (decoding.DecodeSettings -> dict under config key names), as
    written into each part's metadata (:data:`SETTINGS_METADATA_KEY`) by both stage-2 runners."""
    return {"sample_rate": int(settings.sample_rate), "quantization_channels": int(settings.quantization_channels),
            "trim_silence": bool(settings.trim_silence), "silence_threshold": float(settings.silence_threshold_db),
            "min_seconds": float(settings.min_seconds)}


def part_metadata(settings):
    """The Parquet key-value metadata of a part made with ``settings`` (decoding.DecodeSettings)."""
    return {SETTINGS_METADATA_KEY: json.dumps(part_settings(settings)).encode()}


SETTINGS_SIDECAR = "_settings.json"  # in tracks/: the settings of the parts Spark wrote (its writer sets no metadata)


def settings_sidecar_path(dataset_dir):
    """Where the settings of Spark-written parts are kept (``tracks/_settings.json``; readers skip ``_`` names)."""
    return os.path.join(dataset_dir, "tracks", SETTINGS_SIDECAR)


def read_settings_sidecar(path):
    """The settings dict in a :data:`SETTINGS_SIDECAR` file, or None when it is missing or unreadable."""
    recorded = read_json(path)
    return recorded if isinstance(recorded, dict) else None


def settings_of_part(metadata, info=None, recorded=None):
    """The settings dict a part was made with, from its key-value ``metadata`` (bytes keys; {} or None when
    it has none). A part without it (written by Spark, or older) falls back to ``recorded`` (the
    :data:`SETTINGS_SIDECAR` dict), then to ``info`` (dataset.json). None when none says."""
    metadata = metadata or {}
    if SETTINGS_METADATA_KEY in metadata:
        return json.loads(metadata[SETTINGS_METADATA_KEY])
    if recorded:
        return recorded
    if info:
        return {"sample_rate": info.get("sample_rate"), "quantization_channels": info.get("quantization_channels"),
                "trim_silence": info.get("trim_silence"), "silence_threshold": info.get("silence_threshold_db"),
                "min_seconds": info.get("min_seconds")}
    return None


def check_same_settings(out_dir, info, index, settings, part_metadatas=None, recorded=None):
    """Raise ValueError when ``out_dir`` already holds tracks made with other settings than ``settings``.

    The rows are the truth (a killed run leaves no dataset.json, or a stale one): each part's metadata
    (:data:`SETTINGS_METADATA_KEY`), and the rows' own ``sample_rate``; ``info`` (its dataset.json dict, {}
    if none) only for parts without metadata. ``index``: its index rows (their ``sample_rate`` checked when read
    with :data:`INDEX_WITH_RATE`); ``settings``: decoding.DecodeSettings;
    ``part_metadatas``: the key-value metadata of each part and ``recorded``: the :data:`SETTINGS_SIDECAR`
    dict (defaults: read from the local folder ``out_dir``). Both runners write what this reads: parts with
    metadata (local), the sidecar (Spark).
    """
    if part_metadatas is None:
        part_metadatas = [store.open_part(part).schema_arrow.metadata for part in store.list_parts(out_dir)]
        recorded = read_settings_sidecar(settings_sidecar_path(out_dir))
    made = [settings_of_part(metadata, info, recorded) for metadata in part_metadatas]
    made += [{"sample_rate": rate} for rate in sorted({int(row["sample_rate"]) for row in index if "sample_rate" in row})]
    for old in filter(None, made):
        for key, value in part_settings(settings).items():
            if old.get(key) is not None and old[key] != value:
                raise ValueError(f"{out_dir} holds tracks made with {key}={old[key]}; use another out_dir or "
                                 f"--{key}={old[key]}")


def list_inputs(raw_dir):
    """The tracks stage 2 should process: a list of dicts with track_id, genre, path, split, sha256.

    Uses ``raw_dir/manifest.csv`` when present (paths relative to ``raw_dir``); otherwise every audio file
    below ``raw_dir`` with genre = the name of its parent folder and track_id = its file name without the
    extension (or its relative path, where two files share a name). ``sha256`` is "" when unknown.
    """
    def join(relative):
        return os.path.join(raw_dir, *relative.split("/"))

    replaced = []
    rows = manifest.read_manifest(raw_dir, replaced)
    if rows:
        return inputs_from_manifest(rows.values(), join, replaced)
    relative_paths = []
    for root, dirs, names in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative_paths += [os.path.relpath(os.path.join(root, n), raw_dir).replace(os.sep, "/") for n in sorted(names)]
    return inputs_from_files(relative_paths, join)


def inputs_from_manifest(rows, join, replaced=()):
    """Input dicts from manifest rows; ``join(relative_path)`` gives the full path (or URI) of a file.

    ``replaced``: the (row, later path) pairs of :func:`local.manifest.read_manifest`: rows whose track_id a
    later row reuses for another file; each becomes an input with a ``refused`` reason, so it is listed in
    failures.csv (:func:`split_refused`), never dropped unseen; so does a row whose genre reads as a path.
    Shared by the local stage (``os.path.join``) and the Spark job (a URI below ``raw_dir``).
    """
    inputs = [{"track_id": r["track_id"], "genre": manifest.tidy_genre(r.get("genre")) or "Unknown",
               "path": join(r["path"]), "split": normalize_split(r.get("split", "")), "sha256": r.get("sha256", "")}
              for r in rows]
    for item in inputs:
        if manifest.genre_path_problem(item["genre"]):
            item["refused"] = manifest.genre_path_problem(item["genre"]) + " (fix its manifest.csv row)"
    return inputs + [{"track_id": r["track_id"], "path": join(r["path"]) if r.get("path") else "(no path)",
                      "refused": f"duplicate track_id {r['track_id']!r} in manifest.csv: a later row's file "
                                 f"({later}) has it; not read"} for r, later in replaced]


def is_audio_path(relative_path):
    """True for a file stage 2 reads when there is no manifest: an audio extension, no hidden component."""
    parts = relative_path.split("/")
    return (not any(p.startswith(".") for p in parts)
            and os.path.splitext(parts[-1])[1].lower() in manifest.AUDIO_EXTENSIONS)


def inputs_from_files(relative_paths, join):
    """Input dicts for the audio files among ``relative_paths`` ("/"-separated, relative to ``raw_dir``).

    genre = the parent folder's name ("Unknown" at the top), track_id = the file name without extension, or
    the relative path with "__" for "/" where two files share a name. ``join`` as in :func:`inputs_from_manifest`.
    """
    relative_paths = [r for r in relative_paths if is_audio_path(r)]
    stems = [os.path.splitext(r.split("/")[-1])[0] for r in relative_paths]
    inputs = []
    for relative, stem in zip(relative_paths, stems):
        track_id = stem if stems.count(stem) == 1 else os.path.splitext(relative)[0].replace("/", "__")
        parent = relative.rsplit("/", 1)[0] if "/" in relative else ""
        inputs.append({"track_id": track_id, "genre": manifest.tidy_genre(parent.split("/")[-1]) or "Unknown",
                       "path": join(relative), "split": "", "sha256": ""})
    return inputs


def normalize_split(name):
    """Map a source's split name (FMA: training/validation/test) to train/valid/test; "" if none."""
    name = (name or "").strip().lower()
    return {"training": "train", "train": "train", "validation": "valid", "valid": "valid", "val": "valid",
            "test": "test"}.get(name, "")


def hash_unit(track_id, split_seed):
    """A stable number in [0, 1) from a track id and a seed (sha256; independent of the other tracks)."""
    digest = hashlib.sha256(f"{split_seed}/{track_id}".encode("utf-8")).hexdigest()
    return int(digest[:15], 16) / 16 ** 15


def hash_split(track_id, valid_fraction, test_fraction, split_seed):
    """The split of a track from a stable hash: test below ``test_fraction``, then valid, then train."""
    u = hash_unit(track_id, split_seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def ensure_train_per_genre(new_rows, existing_rows, split_seed):
    """Move one new track of each genre that would otherwise have no train track into train (in place).

    Only tracks that are new in this run move, so tracks already in the dataset keep their split. The track
    moved is the one whose hash is closest to train, so the choice is stable for a given set of tracks.
    Returns the list of genres that still have no train track (their tracks came with a source split).
    """
    has_train = {r["genre"] for r in list(existing_rows) + list(new_rows) if r["split"] == "train"}
    lacking = []
    for genre in sorted({r["genre"] for r in new_rows} - has_train):
        movable = [r for r in new_rows if r["genre"] == genre and not r.get("split_from_source")]
        if not movable:
            lacking.append(genre)
            continue
        max(movable, key=lambda r: hash_unit(r["track_id"], split_seed))["split"] = "train"
    return lacking


EVERY_SPLIT_MIN_TRACKS = 3  # a genre with at least this many tracks gets a train, a valid and a test track


def ensure_every_split_per_genre(new_rows, existing_rows, split_seed, min_tracks=EVERY_SPLIT_MIN_TRACKS):
    """Give every genre a train track, and one of at least ``min_tracks`` tracks a valid and a test track too.

    Train first (:func:`ensure_train_per_genre`); then, for a genre of at least ``min_tracks`` tracks (new and
    existing) with no valid (then no test) track, one new track moves there from a split of that genre that
    keeps another track (train preferred): of those, the one whose hash is closest to the split (the lowest),
    so the choice is stable for a given set of tracks. Tracks already in the dataset and tracks whose split
    came from the source never move. In place; returns the genres still without a train track.
    """
    lacking = ensure_train_per_genre(new_rows, existing_rows, split_seed)
    rows = list(existing_rows) + list(new_rows)
    for genre in sorted({r["genre"] for r in new_rows}):
        of_genre = [r for r in rows if r["genre"] == genre]
        if len(of_genre) < min_tracks:
            continue
        for split in ("valid", "test"):
            counts = {s: sum(r["split"] == s for r in of_genre) for s in ("train", "valid", "test")}
            if counts[split]:
                continue
            donors = [r for r in new_rows if r["genre"] == genre and not r.get("split_from_source")
                      and counts.get(r["split"], 0) > 1]
            if donors:
                min(donors, key=lambda r: (r["split"] != "train", hash_unit(r["track_id"], split_seed),
                                           r["track_id"]))["split"] = split
    return lacking


def resplit_usable(written, kept_rows, splits):
    """The splits the tracks a run could use (decoded and written) should have: :func:`plan_tracks`'s rule
    applied to them alone, so planned valid/test tracks that failed to decode leave no genre without one.

    ``written``: the planned items whose rows were written (``track_id``, ``genre``, ``split``,
    ``split_from_source``); ``kept_rows``: the dataset's rows from before the run that stay (they never move);
    ``splits``: SplitSettings. Returns {track_id: split} for the written tracks whose split changes ({} when
    every planned track decoded: the plan already split them so).
    """
    rows = [dict(item, split=item["split"] if item["split_from_source"] else
                 hash_split(item["track_id"], splits.valid_fraction, splits.test_fraction, splits.split_seed))
            for item in written]
    ensure_every_split_per_genre(rows, kept_rows, splits.split_seed)
    return {row["track_id"]: row["split"] for row, item in zip(rows, written) if row["split"] != item["split"]}


def split_written_rows(out_dir, written, index, inputs, changed, pending, splits):
    """Give the rows a run wrote (and those a killed run wrote, ``pending`` ids) the splits of
    :func:`resplit_usable`, rewriting only the parts whose rows move (:func:`local.dataset_store.set_splits`).

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
    # genres with data only: those of the rows kept (ids stable); a new genre gets its id once a track of it
    # is kept (see genres_with_data), in sorted order
    genres = assign_genre_ids(known_genres(existing.values(), recorded_genres) if kept else [],
                              [r["genre"] for r in kept.values()])
    return {"todo": sorted(todo, key=lambda item: item["genre"]), "skipped": skipped, "changed": changed,
            "genres": genres}


def unify_genres(inputs, known=()):
    """``inputs`` (copies) with one spelling per genre: names equal but for case and spacing
    (:func:`local.manifest.genre_key`: "Rock", "rock", "ROCK ") become one genre - the spelling a ``known``
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
    """The dataset row (:data:`local.dataset_store.TRACK_SCHEMA` columns) of a processed input."""
    return {"track_id": item["track_id"], "genre": item["genre"], "genre_id": genres.index(item["genre"]),
            "split": item["split"], "sample_rate": int(sample_rate), "n_samples": int(track["n_samples"]),
            "codes": track["codes"], "source_path": item["path"], "source_sha256": item["sha256"]}


def dataset_info(index, genres, settings, splits):
    """The ``dataset.json`` dict for the dataset's index rows and the settings that made it."""
    return store.summarize(index, settings.sample_rate, settings.quantization_channels, genres, extra={
        "trim_silence": settings.trim_silence, "silence_threshold_db": settings.silence_threshold_db,
        "min_seconds": settings.min_seconds, **dataclasses.asdict(splits)})


def input_path_problem(raw_dir, path):
    """Why stage 2 must not open ``path`` listed under the local folder ``raw_dir`` (it resolves outside it:
    ``../../etc/passwd``; a device, FIFO or socket: ``/dev/zero``), or ""."""
    if manifest.name_problem(path):
        return manifest.name_problem(path)
    root = os.path.realpath(raw_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        return outside_raw_dir_reason(real)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return ""  # missing: reported as such when processed
    return "" if stat.S_ISREG(mode) else decoding.SPECIAL_FILE_REASON


def outside_raw_dir_reason(resolved):
    """The failures.csv reason of an input that resolves outside raw_dir (to ``resolved``)."""
    return f"outside raw_dir (resolves to {resolved}): not read"


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


SPLITS_PENDING_NAME = ".splits-pending.json"  # {"track_ids": [...]}: rows whose split a killed run left planned
SOURCE_STATS_NAME = "source_stats.json"  # path -> [bytes, mtime_ns, sha256] of the inputs last seen


class SourceFingerprints:
    """Decide "unchanged" from the file itself: size + mtime as the fast path, the sha256 when they differ.

    Kept in ``<out_dir>/source_stats.json``; a manifest's sha256 is never trusted over the file's bytes.
    """

    def __init__(self, out_dir):
        self.path = os.path.join(out_dir, SOURCE_STATS_NAME)
        try:
            with open(self.path, encoding="utf-8") as f:
                self.known = {k: tuple(v) for k, v in json.load(f).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            self.known = {}

    def sha_of(self, path):
        """The sha256 of the file at ``path`` now ("" if missing or not a regular file)."""
        try:
            file_stat = os.stat(path)
        except OSError:
            return ""
        if not stat.S_ISREG(file_stat.st_mode):
            return ""
        cached = self.known.get(path)
        if cached and cached[0] == file_stat.st_size and cached[1] == file_stat.st_mtime_ns:
            return cached[2]
        sha = manifest.sha256_file(path)
        self.known[path] = (file_stat.st_size, file_stat.st_mtime_ns, sha)
        return sha

    def remember(self, path, file_stat, sha):
        """Record the (size, mtime_ns) a file had when the bytes hashed to ``sha`` were read."""
        if file_stat:
            self.known[path] = (int(file_stat[0]), int(file_stat[1]), sha)

    def save(self):
        write_json_atomic(self.path, {k: list(v) for k, v in sorted(self.known.items())})


def decode_settings_of(info):
    """The decoding.DecodeSettings a dataset was made with, from its ``dataset.json`` dict (:func:`dataset_info`), so a
    file decoded later (a tagger tagging it) gets the very codes stage 2 would have given it."""
    defaults = decoding.DecodeSettings()
    return decoding.DecodeSettings(sample_rate=int(info["sample_rate"]), quantization_channels=int(info["quantization_channels"]),
                          trim_silence=bool(info.get("trim_silence", defaults.trim_silence)),
                          silence_threshold_db=float(info.get("silence_threshold_db", defaults.silence_threshold_db)),
                          min_seconds=float(info.get("min_seconds", defaults.min_seconds)))


def preprocess(raw_dir, out_dir, *, workers=1, rows_per_part=64, progress=True, **dataset_keys):
    """Stage 2: turn the audio under ``raw_dir`` into the Parquet dataset in ``out_dir``.

    ``dataset_keys``: the :data:`DATASET_KEYS` as in the config (``sample_rate=16000``, ``silence_threshold=60.0``,
    ...; one not given keeps its default). ``workers``: decoding processes; ``rows_per_part``: tracks per part.
    Idempotent: a track already in the dataset whose file is unchanged (size + mtime as recorded in
    ``source_stats.json``, else the file's sha256 - never the manifest's claim) is skipped; a changed file
    replaces its old row. One writer at a time (``local.locks``: a second run on ``out_dir`` raises LockHeld).
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
    warnings, genres, processed, with_libsndfile, written = [], list(plan["genres"]), 0, 0, []
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
