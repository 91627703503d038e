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
import functools
import hashlib
import json
import math
import os
import re
import stat
import sys

import numpy as np

from local import audio, manifest
from local.config import ConfigError

SILENT_PEAK = 10 ** (-60 / 20)  # a file whose peak is below -60 dBFS is silence, not music
LIBSNDFILE = "libsndfile"  # result["decoder"] of a file ffmpeg refused and libsndfile decoded
MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ = 1000, 192000
# A file larger than this is decoded, resampled and trimmed in chunks (see track_from_stream), so a 2-hour mix
# needs memory for its codes (1 byte per sample) only; smaller ones are decoded whole, a batch per ffmpeg.
# 8 MB is ~8 min of 128 kbps mp3, ~47 s of CD-quality WAV.
STREAM_ABOVE_BYTES = 8 << 20
# ... and a smaller file whose decoded audio is longer than this (a FLAC of near-silence, a WAV header claiming
# 1 Hz) is streamed too: the whole decode stops holding it at this length (audio.TooLongToHold), so peak memory
# is bounded by the decoded length, whatever the size. 10 min at 44.1 kHz stereo is 212 MB of float PCM.
WHOLE_DECODE_MAX_SECONDS = 600
MIN_FILE_RATE_HZ, MAX_FILE_RATE_HZ = 1000, 768000  # a file's own rate outside these is a hostile header, not audio
TRIM_FRAME, TRIM_HOP = 2048, 512  # librosa.effects.trim's frame and hop (audio.trim_silence uses them too)
MISSING_REASON = "file not found (listed in the manifest but missing)"
SPECIAL_FILE_REASON = "not a regular file (a device, FIFO or socket): not read"
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

    def finite(key):
        return isinstance(config[key], (int, float)) and math.isfinite(config[key])
    problems = (
        ("sample_rate", not MIN_SAMPLE_RATE_HZ <= config["sample_rate"] <= MAX_SAMPLE_RATE_HZ,
         f"between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ} Hz, like 16000"),
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
    from local import checks
    if checks.shared_folder_problem(config, "out_dir", "raw_dir"):
        raise ConfigError(checks.shared_folder_problem(config, "out_dir", "raw_dir"))
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", config["out_dir"]):  # a local folder (Spark may write to a URI)
        from local import checks
        if checks.output_folder_problem(config["out_dir"], "out_dir"):
            raise ConfigError(checks.output_folder_problem(config["out_dir"], "out_dir"))


def check_raw_dir(raw_dir, hint="FOLDER"):
    """Raise ConfigError when the local folder ``raw_dir`` is a file, is missing or holds no audio file."""
    from local import checks
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
    """The settings every row of a dataset must share (DecodeSettings -> dict under config key names), as
    written into each part's metadata (:data:`SETTINGS_METADATA_KEY`) by both stage-2 runners."""
    return {"sample_rate": int(settings.sample_rate), "quantization_channels": int(settings.quantization_channels),
            "trim_silence": bool(settings.trim_silence), "silence_threshold": float(settings.silence_threshold_db),
            "min_seconds": float(settings.min_seconds)}


def part_metadata(settings):
    """The Parquet key-value metadata of a part made with ``settings`` (DecodeSettings)."""
    return {SETTINGS_METADATA_KEY: json.dumps(part_settings(settings)).encode()}


SETTINGS_SIDECAR = "_settings.json"  # in tracks/: the settings of the parts Spark wrote (its writer sets no metadata)


def settings_sidecar_path(dataset_dir):
    """Where the settings of Spark-written parts are kept (``tracks/_settings.json``; readers skip ``_`` names)."""
    return os.path.join(dataset_dir, "tracks", SETTINGS_SIDECAR)


def read_settings_sidecar(path):
    """The settings dict in a :data:`SETTINGS_SIDECAR` file, or None when it is missing or unreadable."""
    from local.fileio import read_json
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
    with :data:`INDEX_WITH_RATE`); ``settings``: DecodeSettings;
    ``part_metadatas``: the key-value metadata of each part and ``recorded``: the :data:`SETTINGS_SIDECAR`
    dict (defaults: read from the local folder ``out_dir``). Both runners write what this reads: parts with
    metadata (local), the sidecar (Spark).
    """
    from local import dataset_store as store
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
    failures.csv (:func:`split_refused`), never dropped unseen.
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


def check_file_rate(file_rate):
    """Raise TrackError when a file's own sample rate (Hz, from its header) is no audio rate: a WAV claiming
    1 Hz would resample 96 kB into 27 hours of audio."""
    if not MIN_FILE_RATE_HZ <= file_rate <= MAX_FILE_RATE_HZ:
        raise TrackError(f"sample rate {file_rate} Hz in the file's header, outside {MIN_FILE_RATE_HZ}.."
                         f"{MAX_FILE_RATE_HZ} Hz: not audio")


def check_finite(samples):
    """Raise TrackError when decoded ``samples`` hold NaN or infinite values (a float WAV written by a broken
    program): no level, trimming or length means anything for them."""
    if not np.isfinite(samples).all():
        raise TrackError("NaN or infinite samples (a broken float file): not audio")


def decode_after_ffmpeg_refused(error, data, path=None):
    """ffmpeg refused the bytes ``data`` with ``error``: decode the file itself with ffmpeg (an m4a indexed at
    its end), else with libsndfile (:func:`local.audio.decode_with_libsndfile`; real Ogg Vorbis files of
    libVorbis 1.3.1 are refused by ffmpeg and played by libsndfile).

    Returns ((samples, sample_rate, warning), decoder) with decoder "ffmpeg" or :data:`LIBSNDFILE`;
    raises TrackError with ffmpeg's reason when neither can decode it.
    """
    if path and os.path.isfile(path):
        try:
            return audio.decode_audio(path, max_seconds=WHOLE_DECODE_MAX_SECONDS), "ffmpeg"
        except audio.DecodeError:
            pass
    try:
        return audio.decode_with_libsndfile(data, WHOLE_DECODE_MAX_SECONDS), LIBSNDFILE
    except audio.DecodeError:
        pass
    if path and os.path.isfile(path):
        raise TrackError(str(error)) from None
    return decode_from_path(error, None), "ffmpeg"  # raises, with the m4a hint


def decode_from_path(error, fallback_path):
    """After decoding the bytes failed with ``error``: decode the file itself, or raise TrackError."""
    if not fallback_path:
        raise TrackError(f"{error} (if it decodes from a file, it cannot be read as a stream: for m4a, "
                         f"remux with ffmpeg -movflags +faststart)") from None
    try:
        return audio.decode_audio(fallback_path, max_seconds=WHOLE_DECODE_MAX_SECONDS)
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
    check_file_rate(file_rate)
    check_finite(samples)
    y = audio.resample(audio.to_mono(samples), file_rate, settings.sample_rate)
    y = audio.peak_normalize(y)
    if y.size == 0 or float(np.max(np.abs(y))) < SILENT_PEAK:
        raise TrackError("silent: no sample above -60 dBFS")
    if float(np.max(y)) - float(np.min(y)) < SILENT_PEAK:  # a constant (DC) level is no sound either
        raise TrackError("silent: a constant level (DC offset), no sound above -60 dBFS")
    decoded_seconds = len(y) / settings.sample_rate
    if settings.trim_silence:
        y = audio.trim_silence(y, silence_threshold_db=settings.silence_threshold_db)
    seconds = len(y) / settings.sample_rate
    check_length(seconds, trimmed=seconds < decoded_seconds, warning=warning, settings=settings)
    codes = audio.mu_law_encode(y, settings.quantization_channels)
    if warning:
        warning = f"partly decodable ({warning}); kept {seconds:.1f} s"
    track = {"codes": codes.tobytes(), "n_samples": int(len(codes)), "seconds": seconds, "warning": warning}
    if keep_waveform:
        track["waveform"] = y
    return track


def check_length(seconds, *, trimmed, warning, settings):
    """Raise TrackError when a track of ``seconds`` (after trimming, ``trimmed`` when that shortened it) is below
    ``settings.min_seconds``; ``warning``: ffmpeg's words when the file was only partly decodable."""
    if seconds >= settings.min_seconds:
        return
    what = f"{seconds:.2f} s" + (" after trimming silence" if settings.trim_silence and trimmed else "")
    if warning:
        raise TrackError(f"truncated or corrupt ({warning}); only {what} decodable, "
                         f"below min_seconds={settings.min_seconds}")
    raise TrackError(f"too short: {what}, below min_seconds={settings.min_seconds}")


def stream_pass(chunks, sample_rate, quantization_channels, divide_by=None):
    """One pass over decoded chunks: mono, soxr's streaming resampler, mu-law codes, trimming energy.

    ``chunks``: a generator of ``(samples (n, channels) float32, file_rate Hz)`` whose return value is the
    decoder's warning (:func:`local.audio.stream_decode`). ``divide_by``: the peak to normalize by (None: none).
    Returns a dict: ``codes`` (bytearray, 1 byte per sample), ``block_energy`` (float64 sum of squares of
    each 512-sample block), ``peak``, ``low``, ``high`` (sample extremes), ``n_samples``, ``warning``.
    """
    import soxr

    state = {"codes": bytearray(), "blocks": [], "peak": 0.0, "low": np.inf, "high": -np.inf, "n_samples": 0}
    carry = np.zeros(0, np.float32)

    def consume(y):
        nonlocal carry
        if divide_by is not None:
            y = y / np.float32(divide_by)
        if y.size == 0:
            return
        state["peak"] = max(state["peak"], float(np.max(np.abs(y))))
        state["low"], state["high"] = min(state["low"], float(np.min(y))), max(state["high"], float(np.max(y)))
        state["codes"].extend(audio.mu_law_encode(y, quantization_channels).tobytes())
        state["n_samples"] += len(y)
        joined = np.concatenate([carry, y]) if carry.size else y
        whole = len(joined) // TRIM_HOP * TRIM_HOP
        blocks = joined[:whole].reshape(-1, TRIM_HOP).astype(np.float64)
        state["blocks"].append(np.einsum("ij,ij->i", blocks, blocks))
        carry = joined[whole:].copy()

    resampler, warning = None, ""
    while True:
        try:
            chunk, file_rate = next(chunks)
        except StopIteration as stop:
            warning = stop.value or ""
            break
        check_file_rate(file_rate)
        check_finite(chunk)
        if resampler is None and int(file_rate) != int(sample_rate):
            resampler = soxr.ResampleStream(int(file_rate), int(sample_rate), 1, dtype="float32", quality="HQ")
        mono = audio.to_mono(chunk)
        consume(resampler.resample_chunk(mono) if resampler is not None else mono)
    if resampler is not None:
        consume(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    tail = carry.astype(np.float64)
    state["blocks"].append(np.array([tail @ tail]) if tail.size else np.zeros(0))
    state["block_energy"] = np.concatenate(state["blocks"]) if state["blocks"] else np.zeros(0)
    del state["blocks"]
    state["warning"] = warning
    return state


def trim_bounds(block_energy, n_samples, silence_threshold_db):
    """(start, end) sample bounds that librosa.effects.trim(top_db, frame_length=2048, hop_length=512) keeps,
    from the energy of 512-sample blocks: centred frame k spans blocks k-2..k+1 (zeros past the ends)."""
    n_frames = 1 + n_samples // TRIM_HOP
    padded = np.concatenate([np.zeros(2), block_energy, np.zeros(n_frames + 2 - len(block_energy))])
    power = (padded[0:n_frames] + padded[1:n_frames + 1] + padded[2:n_frames + 2] + padded[3:n_frames + 3]) / TRIM_FRAME
    amin_power = 1e-10  # librosa.amplitude_to_db's amin=1e-5, squared
    db = 10.0 * np.log10(np.maximum(amin_power, power)) - 10.0 * np.log10(max(amin_power, float(np.max(power))))
    loud = np.flatnonzero(db > -silence_threshold_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * TRIM_HOP, min(n_samples, (int(loud[-1]) + 1) * TRIM_HOP)


def track_from_stream(open_chunks, settings):
    """:func:`track_from_samples` for a file of any length, in memory for its codes only.

    ``open_chunks()`` starts a new decode (a generator as :func:`local.audio.stream_decode` returns);
    ``settings``: DecodeSettings. One pass resamples (soxr's streaming API), encodes and measures the
    trimming energy on the fly; a second decode happens only when the peak exceeds 1.0 and the audio must be
    scaled down first. Returns the track dict of :func:`track_from_samples` (``codes`` a bytearray, no
    waveform); raises TrackError (and DecodeError when nothing decodes).
    """
    rate, levels = settings.sample_rate, settings.quantization_channels
    state = stream_pass(open_chunks(), rate, levels)
    if state["peak"] > 1.0:  # peak_normalize divides by the peak: the codes must be made again, scaled
        state = stream_pass(open_chunks(), rate, levels, divide_by=state["peak"])
    n_samples, warning = state["n_samples"], state["warning"]
    if n_samples == 0 or state["peak"] < SILENT_PEAK:
        raise TrackError("silent: no sample above -60 dBFS")
    if state["high"] - state["low"] < SILENT_PEAK:
        raise TrackError("silent: a constant level (DC offset), no sound above -60 dBFS")
    start, end = trim_bounds(state["block_energy"], n_samples, settings.silence_threshold_db) \
        if settings.trim_silence else (0, n_samples)
    seconds = (end - start) / rate
    check_length(seconds, trimmed=end - start < n_samples, warning=warning, settings=settings)
    codes = state["codes"]
    del codes[end:]  # in place: no second copy of a 2-hour track's codes
    del codes[:start]
    if warning:
        warning = f"partly decodable ({warning}); kept {seconds:.1f} s"
    # the bytearray itself (bytes() would hold a second copy): pyarrow and Spark take it as binary
    return {"codes": codes, "n_samples": end - start, "seconds": seconds, "warning": warning}


MMAP_THRESHOLD_BYTES = 4 << 20  # glibc malloc blocks above this get their own mapping (see keep_large_blocks_mapped)


@functools.lru_cache(maxsize=None)
def keep_large_blocks_mapped():
    """From now on, make glibc's malloc give each block above :data:`MMAP_THRESHOLD_BYTES` its own mapping, so
    that a long track's codes grow by mremap and go back to the system when freed. Returns whether it could.

    By default glibc raises that threshold to the size of each large block freed (up to 32 MB); past it, the
    next long track's codes grow on the heap by realloc (copies) and stay there once freed: a run over two
    60-min files peaked at 131-135 MB against 104 MB for one (``peak_rss_mb_60_min_twice`` of
    bench/bench_preprocessing.py), 105 MB with this. Called on a process's first long track only: it costs
    short files decoded whole in the same process 15-20 ms of system time each (page faults of fresh
    mappings; measured on 30 s clips). A no-op off glibc.
    """
    import ctypes
    import platform
    if platform.libc_ver()[0] != "glibc":
        return False
    m_mmap_threshold = -3  # <malloc.h>; setting it also turns glibc's dynamic threshold off
    return bool(ctypes.CDLL(None).mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES))


def process_long_input(item, settings, data=None):
    """One input above :data:`STREAM_ABOVE_BYTES`, hashed and decoded as a stream (from its path, or from
    ``data`` on a Spark executor), ffmpeg first, libsndfile when ffmpeg refuses it.

    Returns (item with ``sha256`` (and ``stat`` when read from a path), track dict with ``decoder``)."""
    keep_large_blocks_mapped()
    if data is None:
        file_stat = os.stat(item["path"])
        if not stat.S_ISREG(file_stat.st_mode):
            raise TrackError(SPECIAL_FILE_REASON)
        with open(item["path"], "rb") as f:
            head = f.read(64)
        item = dict(item, sha256=manifest.sha256_file(item["path"]), stat=(file_stat.st_size, file_stat.st_mtime_ns))
        source = item["path"]
    else:
        head, source = bytes(data[:64]), data
        item = dict(item, sha256=hashlib.sha256(data).hexdigest())
    check_bytes(head)
    try:
        track, decoder = track_from_stream(lambda: audio.stream_decode(source), settings), "ffmpeg"
    except audio.DecodeError as error:
        try:
            track = track_from_stream(lambda: audio.stream_decode_with_libsndfile(source), settings)
            decoder = LIBSNDFILE
        except audio.DecodeError:
            raise TrackError(str(error)) from None
    return item, dict(track, decoder=decoder)


def read_regular_file(path):
    """The bytes and (size, mtime_ns) of ``path``; TrackError unless it is a regular file (no device, FIFO)."""
    file_stat = os.stat(path)
    if not stat.S_ISREG(file_stat.st_mode):
        raise TrackError(SPECIAL_FILE_REASON)
    with open(path, "rb") as f:
        data = f.read()
    return data, (file_stat.st_size, file_stat.st_mtime_ns)


def process_batch(items, settings, datas=None, keep_waveform=False):
    """Read, check and decode several inputs, their audio decoded by one ffmpeg process (see
    :func:`local.audio.decode_many`: the same samples as one file at a time, at about half the CPU for short
    clips). Never raises.

    items : input dicts (:func:`list_inputs`; at least ``path``)
    settings : DecodeSettings
    datas : the files' bytes, one per item (a Spark executor has them; ``path`` may then be a URI), or None
        to read each from its path. Each file is read once: its bytes give the sha256 and the audio.
    keep_waveform : also return the float waveform (files above :data:`STREAM_ABOVE_BYTES` are then decoded
        whole rather than streamed)
    Files above :data:`STREAM_ABOVE_BYTES` are decoded, resampled, coded and trimmed as a stream
    (:func:`track_from_stream`): memory for their codes only. A file ffmpeg refuses is decoded with
    libsndfile (:func:`decode_after_ffmpeg_refused`); the track's ``decoder`` says which one did.
    Returns a list, one per item, of (item with the ``sha256`` of the bytes decoded now (never a manifest's
    claim) and, when read from a path, ``stat`` (size, mtime_ns); track dict of :func:`track_from_samples`
    with ``decoder``, or None; reason it failed or "").
    """
    results, pending = [None] * len(items), []
    for k, item in enumerate(items):
        try:
            size = len(datas[k]) if datas is not None else file_size(item)
            if size > STREAM_ABOVE_BYTES and not keep_waveform:  # a long file: streamed, never whole in memory
                results[k] = (*process_long_input(item, settings, None if datas is None else datas[k]), "")
                continue
            if datas is None:
                data, file_stat = read_regular_file(item["path"])
                item = dict(item, stat=file_stat)
            else:
                data = datas[k]
            # the recorded sha256 is the one of the bytes decoded now, never what a manifest claims
            item = dict(item, sha256=hashlib.sha256(data).hexdigest())
            check_bytes(data)
            pending.append((k, item, data))
        except Exception as e:
            results[k] = (item, None, failure_reason(e))
    decoded = audio.decode_many([data for _, _, data in pending], max_seconds=WHOLE_DECODE_MAX_SECONDS) \
        if pending else []
    for (k, item, data), outcome in zip(pending, decoded):
        try:
            decoder = "ffmpeg"
            if isinstance(outcome, audio.DecodeError):  # an m4a indexed at its end, an Ogg only libsndfile reads
                outcome, decoder = decode_after_ffmpeg_refused(outcome, data, item["path"])
            if isinstance(outcome, audio.TooLongToHold):
                raise outcome
            results[k] = (item, dict(track_from_samples(*outcome, settings, keep_waveform), decoder=decoder), "")
        except audio.TooLongToHold as too_long:  # small file, long audio: streamed like a large file
            results[k] = long_result(item, settings, data, keep_waveform, too_long)
        except Exception as e:
            results[k] = (item, None, failure_reason(e))
    return results


def long_result(item, settings, data, keep_waveform, too_long):
    """The :func:`process_batch` result of an input whose decoded audio is too long to hold whole (``too_long``,
    audio.TooLongToHold): decoded as a stream from its bytes ``data``; with ``keep_waveform``, refused."""
    try:
        if keep_waveform:
            raise TrackError(f"{too_long}: too long to keep its waveform")
        long_item, track = process_long_input(item, settings, data)
        return dict(long_item, **{k: v for k, v in item.items() if k == "stat"}), track, ""
    except Exception as e:
        return item, None, failure_reason(e)


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

    def hand_over(results):  # keeps no reference: a long track's codes are freed before the next one is decoded
        results.reverse()
        while results:
            yield results.pop()
            bar.update()
    if workers <= 1:
        for job in jobs:
            yield from hand_over(process_batch(*job))
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
    ensure_train_per_genre(todo, kept.values(), splits.split_seed)
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
    from local import dataset_store as store
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
    return "" if stat.S_ISREG(mode) else SPECIAL_FILE_REASON


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
        from local.fileio import write_json_atomic
        write_json_atomic(self.path, {k: list(v) for k, v in sorted(self.known.items())})


def decode_settings_of(info):
    """The DecodeSettings a dataset was made with, from its ``dataset.json`` dict (:func:`dataset_info`), so a
    file decoded later (a tagger tagging it) gets the very codes stage 2 would have given it."""
    defaults = DecodeSettings()
    return DecodeSettings(sample_rate=int(info["sample_rate"]), quantization_channels=int(info["quantization_channels"]),
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
    from local import locks
    with locks.acquire_lock(out_dir, "stage 2"):  # a second writer is refused, never merged
        return preprocess_locked(raw_dir, out_dir, workers=workers, rows_per_part=rows_per_part, progress=progress,
                                 **dataset_keys)


def preprocess_locked(raw_dir, out_dir, *, workers=1, rows_per_part=64, progress=True, on_checked=None,
                      **dataset_keys):
    """:func:`preprocess` while holding ``out_dir``'s lock; ``on_checked()`` (the runner saving its config.json)
    is called once ``out_dir`` is known to take these settings, before anything is written."""
    from local import dataset_store as store

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

    warnings, genres, processed, with_libsndfile = [], list(plan["genres"]), 0, 0
    with store.PartWriter(out_dir, rows_per_part=rows_per_part, metadata=part_metadata(settings)) as writer:
        for item, track, reason in run_inputs(plan["todo"], settings, workers, progress):
            if track is None:
                failed.append((item["path"], reason))
                continue
            if track["warning"]:
                warnings.append((item["path"], track["warning"]))
            genres = genres_with_data(genres, [item["genre"]])  # in genre order: the ids genres_with_data gives
            writer.write(track_row(item, track, genres, settings.sample_rate))
            fingerprints.remember(item["path"], item.get("stat"), item["sha256"])
            processed += 1
            with_libsndfile += track.get("decoder") == LIBSNDFILE
            if len(track["codes"]) > MMAP_THRESHOLD_BYTES:  # (with a pool, long tracks' codes arrive here too)
                keep_large_blocks_mapped()
            del track  # its codes go now, not after the next input is decoded
    fingerprints.save()

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
