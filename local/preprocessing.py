"""Stage 2's steps: check the config, find the inputs, decode them into mu-law codes, assign splits, write the
dataset, say what happened. ``run_transformation_scripts.py`` and ``aws/spark_preprocessing.py`` both call
these functions; only where the files live and who decodes them (a process pool or Spark executors) differs.

One decode path: :func:`process_batch` (a batch of files per ffmpeg process) reads, checks and decodes every
input, on a laptop and on a Spark executor alike; :func:`decode_track` is that path for one file (a path or
its bytes), for anyone who wants a file as stage 2 would see it.

Internal names carry units: ``_seconds``, ``_db``, ``_bytes``; where a size is shown to a person it is in
MB = 10**6 bytes. The config key ``silence_threshold`` is ``silence_threshold_db`` inside.
"""
import dataclasses
import hashlib
import os
import sys

import numpy as np

from local import audio, manifest
from local.config import ConfigError

SILENT_PEAK = 10 ** (-60 / 20)  # a file whose peak is below -60 dBFS is silence, not music
MISSING_REASON = "file not found (listed in the manifest but missing)"
HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{")
# stage 2's config keys that decide the dataset's content (the rest say where and how fast)
DATASET_KEYS = ("sample_rate", "quantization_channels", "trim_silence", "silence_threshold", "min_seconds",
                "valid_fraction", "test_fraction", "split_seed")


class TrackError(Exception):
    """An input that cannot be used; the message is the reason written to failures.csv."""


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """How stage 2 turns an audio file into codes (its config keys; ``silence_threshold`` is the ``_db`` one)."""
    sample_rate: int = 16000  # Hz, the rate the model hears
    quantization_channels: int = 256  # mu-law levels (codes 0..Q-1)
    trim_silence: bool = True  # cut leading and trailing silence
    silence_threshold_db: float = 60.0  # dB below the track's peak that counts as silence when trimming
    min_seconds: float = 1.0  # shorter tracks (after trimming) are refused


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """How stage 2 assigns train/valid/test to a track the source gives no split."""
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0


def stage_settings(**keys):
    """Stage 2's dataset keys (:data:`DATASET_KEYS`, named as in the config) -> (DecodeSettings, SplitSettings).

    A key not given keeps its default; an unknown one raises TypeError.
    """
    unknown = sorted(set(keys) - set(DATASET_KEYS))
    if unknown:
        raise TypeError(f"not a stage-2 dataset key: {', '.join(unknown)}")
    if "silence_threshold" in keys:
        keys["silence_threshold_db"] = keys.pop("silence_threshold")

    def fields_of(cls):
        return {k: v for k, v in keys.items() if k in {f.name for f in dataclasses.fields(cls)}}
    return DecodeSettings(**fields_of(DecodeSettings)), SplitSettings(**fields_of(SplitSettings))


def dataset_keys(config):
    """The :data:`DATASET_KEYS` part of a stage-2 config, for :func:`preprocess` and its Spark twin."""
    return {key: config[key] for key in DATASET_KEYS}


def check_config(config):
    """Raise ConfigError (one line: the key, its value and what it accepts) for the first stage-2 key that
    cannot work. ``config``: the resolved config dict of either stage-2 runner."""
    valid_fraction = config["valid_fraction"]
    problems = (
        ("sample_rate", config["sample_rate"] <= 0, "a positive number of Hz, like 16000"),
        ("quantization_channels", not 2 <= config["quantization_channels"] <= 256,
         "between 2 and 256 (codes are one byte)"),
        ("valid_fraction", not 0 <= valid_fraction < 1, "at least 0 and below 1"),
        ("test_fraction", not 0 <= config["test_fraction"] < 1 - valid_fraction,
         f"at least 0 and below {1 - valid_fraction:g}, so that tracks remain for training"),
        ("min_seconds", config["min_seconds"] < 0, "0 or more seconds"),
        ("workers", config["workers"] < 1, "1 or more"),
    )
    for key, bad, accepted in problems:
        if bad:
            raise ConfigError(f"{key}={config[key]!r} must be {accepted}")


def check_raw_dir(raw_dir, hint="FOLDER"):
    """Raise ConfigError when the local folder ``raw_dir`` is missing or holds no audio file."""
    if not os.path.isdir(raw_dir):
        raise ConfigError(f"raw_dir={raw_dir!r} does not exist: run run_webscraper.py first or pass --raw_dir={hint}")
    if not list_inputs(raw_dir):
        raise ConfigError(f"raw_dir={raw_dir!r} holds no audio files: run run_webscraper.py first or pass "
                          f"--raw_dir={hint}")


def check_same_settings(out_dir, info, index, settings):
    """Raise ValueError when ``out_dir`` already holds tracks made with another sample rate or mu-law.

    ``info``: its dataset.json dict ({} if none); ``index``: its index rows; ``settings``: DecodeSettings.
    """
    for key in ("sample_rate", "quantization_channels"):
        if info and index and info.get(key) != getattr(settings, key):
            raise ValueError(f"{out_dir} holds a dataset made with {key}={info.get(key)}; "
                             f"use another out_dir or --{key}={info.get(key)}")


def list_inputs(raw_dir):
    """The tracks stage 2 should process: a list of dicts with track_id, genre, path, split, sha256.

    Uses ``raw_dir/manifest.csv`` when present (paths relative to ``raw_dir``); otherwise every audio file
    below ``raw_dir`` with genre = the name of its parent folder and track_id = its file name without the
    extension (or its relative path, where two files share a name). ``sha256`` is "" when unknown.
    """
    def join(relative):
        return os.path.join(raw_dir, *relative.split("/"))

    rows = manifest.read_manifest(raw_dir)
    if rows:
        return inputs_from_manifest(rows.values(), join)
    relative_paths = []
    for root, dirs, names in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative_paths += [os.path.relpath(os.path.join(root, n), raw_dir).replace(os.sep, "/") for n in sorted(names)]
    return inputs_from_files(relative_paths, join)


def inputs_from_manifest(rows, join):
    """Input dicts from manifest rows; ``join(relative_path)`` gives the full path (or URI) of a file.

    Shared by the local stage (``os.path.join``) and the Spark job (a URI below ``raw_dir``).
    """
    return [{"track_id": r["track_id"], "genre": r.get("genre") or "Unknown", "path": join(r["path"]),
             "split": normalize_split(r.get("split", "")), "sha256": r.get("sha256", "")}
            for r in rows]


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
        inputs.append({"track_id": track_id, "genre": parent.split("/")[-1] or "Unknown", "path": join(relative),
                       "split": "", "sha256": ""})
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


def sniff_not_audio(head):
    """A reason string if the first bytes of a file show it is not audio (an HTML/JSON page), else ""."""
    text = head.lstrip()[:16].lower()
    if any(text.startswith(p) for p in HTML_PREFIXES):
        return "an HTML or text page, not audio (a saved error page?)"
    return ""


def check_bytes(source):
    """Raise TrackError for bytes that are no audio file at all: empty, or an HTML/text page."""
    if len(source) == 0:
        raise TrackError("empty file (0 bytes)")
    not_audio = sniff_not_audio(bytes(source[:64]))
    if not_audio:
        raise TrackError(not_audio)


def decode_from_path(error, fallback_path):
    """After decoding the bytes failed with ``error``: decode the file itself, or raise TrackError."""
    if not fallback_path:
        raise TrackError(f"{error} (if it decodes from a file, it cannot be read as a stream: for m4a, "
                         f"remux with ffmpeg -movflags +faststart)") from None
    try:
        return audio.decode_audio(fallback_path)
    except audio.DecodeError as e:
        raise TrackError(str(e)) from None


def track_from_samples(samples, file_rate, warning, settings, keep_waveform=False):
    """Decoded PCM ``samples`` (n, channels) float32 at ``file_rate`` Hz -> the track as stage 2 keeps it.

    Mono, resampled to ``settings.sample_rate``, scaled down if it clips, silence trimmed, checked against
    ``min_seconds``, mu-law coded. Returns a dict: ``codes`` (bytes, uint8 codes 0..Q-1, one per sample),
    ``n_samples``, ``seconds``, ``warning`` ("" or why only part of the file was decodable) and, with
    ``keep_waveform``, ``waveform`` ((n_samples,) float32 in [-1, 1], the samples the codes encode).
    Raises TrackError with a reason a person understands when the track cannot be used.
    """
    y = audio.resample(audio.to_mono(samples), file_rate, settings.sample_rate)
    y = audio.peak_normalize(y)
    if y.size == 0 or float(np.max(np.abs(y))) < SILENT_PEAK:
        raise TrackError("silent: no sample above -60 dBFS")
    decoded_seconds = len(y) / settings.sample_rate
    if settings.trim_silence:
        y = audio.trim_silence(y, silence_threshold_db=settings.silence_threshold_db)
    seconds = len(y) / settings.sample_rate
    if seconds < settings.min_seconds:
        what = f"{seconds:.2f} s" + (" after trimming silence" if settings.trim_silence and seconds < decoded_seconds
                                     else "")
        if warning:
            raise TrackError(f"truncated or corrupt ({warning}); only {what} decodable, "
                             f"below min_seconds={settings.min_seconds}")
        raise TrackError(f"too short: {what}, below min_seconds={settings.min_seconds}")
    codes = audio.mu_law_encode(y, settings.quantization_channels)
    if warning:
        warning = f"partly decodable ({warning}); kept {seconds:.1f} s"
    track = {"codes": codes.tobytes(), "n_samples": int(len(codes)), "seconds": seconds, "warning": warning}
    if keep_waveform:
        track["waveform"] = y
    return track


def process_batch(items, settings, datas=None, keep_waveform=False):
    """Read, check and decode several inputs, their audio decoded by one ffmpeg process (see
    :func:`local.audio.decode_many`: the same samples as one file at a time, at about half the CPU for short
    clips). Never raises.

    items : input dicts (:func:`list_inputs`; at least ``path``)
    settings : DecodeSettings
    datas : the files' bytes, one per item (a Spark executor has them; ``path`` may then be a URI), or None
        to read each from its path. Each file is read once: its bytes give the sha256 and the audio.
    Returns a list, one per item, of (item with its ``sha256``, track dict of :func:`track_from_samples`
    or None, reason it failed or "").
    """
    results, pending = [None] * len(items), []
    for k, item in enumerate(items):
        try:
            if datas is None:
                with open(item["path"], "rb") as f:
                    data = f.read()
            else:
                data = datas[k]
            item = dict(item, sha256=item.get("sha256") or hashlib.sha256(data).hexdigest())
            check_bytes(data)
            pending.append((k, item, data))
        except Exception as e:
            results[k] = (item, None, failure_reason(e))
    decoded = audio.decode_many([data for _, _, data in pending]) if pending else []
    for (k, item, data), outcome in zip(pending, decoded):
        try:
            if isinstance(outcome, audio.DecodeError):  # e.g. an m4a indexed at its end: try the file itself
                outcome = decode_from_path(outcome, item["path"] if os.path.isfile(item["path"]) else None)
            results[k] = (item, track_from_samples(*outcome, settings, keep_waveform), "")
        except Exception as e:
            results[k] = (item, None, failure_reason(e))
    return results


def decode_track(source, settings=DecodeSettings(), keep_waveform=False):
    """One audio file as stage 2 would keep it: ``(track, "")``, or ``(None, reason)`` when it is unusable.

    source : a file path (str or os.PathLike) or the file's bytes
    settings : DecodeSettings (stage 2's defaults: 16 kHz, 256 levels, silence trimmed at 60 dB, >= 1 s)
    keep_waveform : also return the float waveform, (n_samples,) float32 in [-1, 1] at settings.sample_rate
    ``track``: the dict of :func:`track_from_samples` (``codes``, ``n_samples``, ``seconds``, ``warning``
    and ``waveform``); ``reason``: one line, as written to failures.csv. This is :func:`process_batch` for
    one file, so it gives the very codes the dataset holds for the same bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        item, datas = {"path": ""}, [bytes(source)]
    else:
        item, datas = {"path": os.fspath(source)}, None
    _, track, reason = process_batch([item], settings, datas, keep_waveform)[0]
    return track, reason


def failure_reason(error):
    """The failures.csv reason for an exception met while processing one input."""
    if isinstance(error, TrackError):
        return str(error)
    if isinstance(error, FileNotFoundError):
        return MISSING_REASON
    # an unexpected bug on one file must not stop the stage or lose the others: it is reported as such
    return f"internal error: {type(error).__name__}: {error}"


def process_batch_star(args):
    return process_batch(*args)


def batches(items, size_of, max_files=8, max_bytes=8 << 20):
    """Group ``items`` for :func:`process_batch`: at most ``max_files`` each and, past the first, about
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


def file_size(item):
    """Bytes of an input's file (0 when it is missing: process_batch reports that)."""
    try:
        return os.path.getsize(item["path"])
    except OSError:
        return 0


def run_inputs(inputs, settings, workers=1, progress=True):
    """Yield :func:`process_batch` results for ``inputs``, in batches over a pool of ``workers`` processes,
    with a progress bar."""
    from tqdm import tqdm
    bar = tqdm(total=len(inputs), desc="preprocess", unit="track", disable=not progress, file=sys.stderr)
    per_batch = max(1, min(8, -(-len(inputs) // max(1, 2 * workers))))  # enough batches to keep all busy
    jobs = [(batch, settings) for batch in batches(inputs, file_size, max_files=per_batch)]
    if workers <= 1:
        for job in jobs:
            for result in process_batch(*job):
                yield result
                bar.update()
    else:
        import multiprocessing
        with multiprocessing.Pool(workers) as pool:
            for results in pool.imap_unordered(process_batch_star, jobs, chunksize=1):
                for result in results:
                    yield result
                    bar.update()
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
    one is written), ``genres`` (the new genres list, index = genre_id).
    """
    existing = {r["track_id"]: r for r in index}
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
    ensure_train_per_genre(todo, kept.values(), splits.split_seed)
    genres = assign_genre_ids(known_genres(existing.values(), recorded_genres) if kept else [],
                              [r["genre"] for r in kept.values()] + [i["genre"] for i in todo])
    return {"todo": todo, "skipped": skipped, "changed": changed, "genres": genres}


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
    from local import dataset_store as store
    return store.summarize(index, settings.sample_rate, settings.quantization_channels, genres, extra={
        "trim_silence": settings.trim_silence, "silence_threshold_db": settings.silence_threshold_db,
        "min_seconds": settings.min_seconds, **dataclasses.asdict(splits)})


def decode_settings_of(info):
    """The DecodeSettings a dataset was made with, from its ``dataset.json`` dict (:func:`dataset_info`), so a
    file decoded later (a tagger tagging it) gets the very codes stage 2 would have given it."""
    defaults = DecodeSettings()
    return DecodeSettings(sample_rate=int(info["sample_rate"]), quantization_channels=int(info["quantization_channels"]),
                          trim_silence=bool(info.get("trim_silence", defaults.trim_silence)),
                          silence_threshold_db=float(info.get("silence_threshold_db", defaults.silence_threshold_db)),
                          min_seconds=float(info.get("min_seconds", defaults.min_seconds)))


def sha_of_file(item):
    """The sha256 of an input: the manifest's, else its file's ("" when the file is missing)."""
    return item["sha256"] or (manifest.sha256_file(item["path"]) if os.path.exists(item["path"]) else "")


def preprocess(raw_dir, out_dir, *, workers=1, rows_per_part=64, progress=True, **dataset_keys):
    """Stage 2: turn the audio under ``raw_dir`` into the Parquet dataset in ``out_dir``.

    ``dataset_keys``: the :data:`DATASET_KEYS` as in the config (``sample_rate=16000``, ``silence_threshold=60.0``,
    ...; one not given keeps its default). ``workers``: decoding processes; ``rows_per_part``: tracks per part.
    Idempotent: tracks already in the dataset with the same source sha256 are skipped; a changed file
    replaces its old row. Returns the summary dict :func:`summary_lines` prints: processed, skipped,
    failed [(path, reason)], warnings [(path, text)], dataset (the dataset.json dict), out_dir, failures_csv.
    """
    from local import dataset_store as store

    settings, splits = stage_settings(**dataset_keys)
    info = store.read_dataset_json(out_dir) or {}
    index = store.read_index(out_dir)
    check_same_settings(out_dir, info, index, settings)
    store.remove_stale_temps(out_dir)
    plan = plan_tracks(list_inputs(raw_dir), index, info.get("genres", []), splits, sha_of_file)
    if plan["changed"]:  # the input file changed since it was processed: its old row goes, the new one comes
        store.drop_tracks(out_dir, plan["changed"])

    failed, warnings = [], []
    with store.PartWriter(out_dir, rows_per_part=rows_per_part) as writer:
        for item, track, reason in run_inputs(plan["todo"], settings, workers, progress):
            if track is None:
                failed.append((item["path"], reason))
                continue
            if track["warning"]:
                warnings.append((item["path"], track["warning"]))
            writer.write(track_row(item, track, plan["genres"], settings.sample_rate))

    dataset = dataset_info(store.read_index(out_dir), plan["genres"], settings, splits)
    _, failures_csv = store.write_dataset_files(out_dir, dataset, failed)
    return {"processed": len(plan["todo"]) - len(failed), "skipped": plan["skipped"], "failed": failed,
            "warnings": warnings, "dataset": dataset, "out_dir": out_dir, "failures_csv": failures_csv}


def summary_lines(summary):
    """What a stage-2 runner prints at the end of a run, from its summary dict (see :func:`preprocess`)."""
    dataset = summary["dataset"]
    lines = [f"warning: {path}: {text}" for path, text in summary["warnings"]]
    lines += [f"skipped: {path}: {reason}" for path, reason in summary["failed"]]
    lines.append(f"{summary['processed']} tracks processed, {summary['skipped']} already done, "
                 f"{len(summary['failed'])} failed (see {summary['failures_csv']})")
    if summary.get("decode_core_seconds"):  # what sizing a cluster needs: divide by the cores you will have
        lines.append(f"decoding took {summary['decode_core_seconds']:.1f} core-seconds for "
                     f"{summary['processed'] + len(summary['failed'])} files")
    lines.append(f"dataset: {summary['out_dir']}  {dataset['n_tracks']} tracks, "
                 f"{dataset['n_samples'] / dataset['sample_rate'] / 60:.1f} min; train/valid/test tracks = "
                 f"{dataset['tracks']['train']}/{dataset['tracks']['valid']}/{dataset['tracks']['test']}; "
                 f"genres: {', '.join(dataset['genres'])}")
    return lines
