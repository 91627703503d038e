"""Stage 2's steps: find the inputs, turn one audio file into mu-law codes, assign splits, write the dataset.

:func:`codes_from_samples` is the one function that turns decoded audio into codes, behind both
:func:`process_track` (one file) and :func:`process_batch` (a batch of files per ffmpeg process, which the
local stage runs in a process pool and the Spark job on executors), so all give the same codes for the same
input.
"""
import hashlib
import json
import math
import os
import stat
import sys

import numpy as np

from local import audio, manifest

SILENT_PEAK = 10 ** (-60 / 20)  # a file whose peak is below -60 dBFS is silence, not music
LIBSNDFILE = "libsndfile"  # result["decoder"] of a file ffmpeg refused and libsndfile decoded
MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ = 1000, 192000
# A file larger than this is decoded, resampled and trimmed in chunks (see codes_from_stream), so a 2-hour mix
# needs memory for its codes (1 byte per sample) only; smaller ones are decoded whole, a batch per ffmpeg.
# 8 MB is ~8 min of 128 kbps mp3, ~47 s of CD-quality WAV.
STREAM_ABOVE_BYTES = 8 << 20
TRIM_FRAME, TRIM_HOP = 2048, 512  # librosa.effects.trim's frame and hop (audio.trim_silence uses them too)
MISSING_REASON = "file not found (listed in the manifest but missing)"
HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{")


class TrackError(Exception):
    """An input that cannot be used; the message is the reason written to failures.csv."""


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


def process_track(source, sample_rate=16000, quantization_channels=256, trim_silence=True,
                  silence_threshold=60.0, min_seconds=1.0, fallback_path=None):
    """Decode one audio file into mu-law codes.

    Parameters
    ----------
    source : bytes or str
        The file's bytes (preferred: decoded through ffmpeg's stdin, so a laptop and a Spark executor, which
        only has bytes, get the very same samples), or a file path (read into memory first).
    sample_rate : int, Hz
    trim_silence : bool; silence_threshold : float, dB below the track's peak that counts as silence
    min_seconds : float, the shortest usable track after trimming, seconds
    fallback_path : str, optional
        Where the file lies, for formats that cannot be decoded from a stream (an m4a whose index sits at
        the end): ffmpeg then reads the file itself.

    Returns
    -------
    dict with ``codes`` (bytes, uint8 mu-law codes 0..255), ``n_samples``, ``seconds``, ``warning``
    ("" or why only part of the file could be decoded).

    Raises TrackError with a reason a person understands when the file cannot be used.
    """
    if not isinstance(source, (bytes, bytearray, memoryview)):
        fallback_path = fallback_path or source
        with open(source, "rb") as f:
            source = f.read()
    check_bytes(source)
    try:
        decoded, decoder = audio.decode_audio(source), "ffmpeg"
    except audio.DecodeError as e:
        decoded, decoder = decode_after_ffmpeg_refused(e, source, fallback_path)
    return dict(codes_from_samples(*decoded, sample_rate, quantization_channels, trim_silence, silence_threshold,
                                   min_seconds), decoder=decoder)


def decode_after_ffmpeg_refused(error, data, path=None):
    """ffmpeg refused the bytes ``data`` with ``error``: decode the file itself with ffmpeg (an m4a indexed at
    its end), else with libsndfile (:func:`local.audio.decode_with_libsndfile`).

    Returns ((samples, sample_rate, warning), decoder) with decoder "ffmpeg" or :data:`LIBSNDFILE`;
    raises TrackError with ffmpeg's reason when neither can decode it. Both stage-2 paths (local, Spark)
    come here through :func:`process_batch`.
    """
    if path and os.path.isfile(path):
        try:
            return audio.decode_audio(path), "ffmpeg"
        except audio.DecodeError:
            pass
    try:
        return audio.decode_with_libsndfile(data), LIBSNDFILE
    except audio.DecodeError:
        pass
    if path and os.path.isfile(path):
        raise TrackError(str(error)) from None
    return decode_from_path(error, None), "ffmpeg"  # raises, with the m4a hint


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


def codes_from_samples(samples, file_rate, warning, sample_rate=16000, quantization_channels=256,
                       trim_silence=True, silence_threshold=60.0, min_seconds=1.0):
    """Decoded PCM (n, channels) at ``file_rate`` Hz -> the :func:`process_track` result dict (or TrackError)."""
    y = audio.resample(audio.to_mono(samples), file_rate, sample_rate)
    y = audio.peak_normalize(y)
    if y.size == 0 or float(np.max(np.abs(y))) < SILENT_PEAK:
        raise TrackError("silent: no sample above -60 dBFS")
    if float(np.max(y)) - float(np.min(y)) < SILENT_PEAK:  # a constant (DC) level is no sound either
        raise TrackError("silent: a constant level (DC offset), no sound above -60 dBFS")
    decoded_seconds = len(y) / sample_rate
    if trim_silence:
        y = audio.trim_silence(y, top_db=silence_threshold)
    seconds = len(y) / sample_rate
    if seconds < min_seconds:
        what = f"{seconds:.2f} s" + (" after trimming silence" if trim_silence and seconds < decoded_seconds else "")
        if warning:
            raise TrackError(f"truncated or corrupt ({warning}); only {what} decodable, "
                             f"below min_seconds={min_seconds}")
        raise TrackError(f"too short: {what}, below min_seconds={min_seconds}")
    codes = audio.mu_law_encode(y, quantization_channels)
    if warning:
        warning = f"partly decodable ({warning}); kept {seconds:.1f} s"
    return {"codes": codes.tobytes(), "n_samples": int(len(codes)), "seconds": seconds, "warning": warning}


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


def trim_bounds(block_energy, n_samples, top_db):
    """(start, end) sample bounds that librosa.effects.trim(top_db, frame_length=2048, hop_length=512) keeps,
    from the energy of 512-sample blocks: centred frame k spans blocks k-2..k+1 (zeros past the ends)."""
    n_frames = 1 + n_samples // TRIM_HOP
    padded = np.concatenate([np.zeros(2), block_energy, np.zeros(n_frames + 2 - len(block_energy))])
    power = (padded[0:n_frames] + padded[1:n_frames + 1] + padded[2:n_frames + 2] + padded[3:n_frames + 3]) / TRIM_FRAME
    amin_power = 1e-10  # librosa.amplitude_to_db's amin=1e-5, squared
    db = 10.0 * np.log10(np.maximum(amin_power, power)) - 10.0 * np.log10(max(amin_power, float(np.max(power))))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * TRIM_HOP, min(n_samples, (int(loud[-1]) + 1) * TRIM_HOP)


def codes_from_stream(open_chunks, sample_rate=16000, quantization_channels=256, trim_silence=True,
                      silence_threshold=60.0, min_seconds=1.0):
    """:func:`codes_from_samples` for a file of any length, in memory for its codes only.

    ``open_chunks()`` starts a new decode (a generator as :func:`local.audio.stream_decode` returns). One
    pass resamples (soxr's streaming API), encodes and measures the trimming energy on the fly; a second
    decode happens only when the peak exceeds 1.0 and the audio must be scaled down first. Returns the
    :func:`process_track` dict; raises TrackError (and DecodeError when nothing decodes).
    """
    state = stream_pass(open_chunks(), sample_rate, quantization_channels)
    if state["peak"] > 1.0:  # peak_normalize divides by the peak: the codes must be made again, scaled
        state = stream_pass(open_chunks(), sample_rate, quantization_channels, divide_by=state["peak"])
    n_samples, warning = state["n_samples"], state["warning"]
    if n_samples == 0 or state["peak"] < SILENT_PEAK:
        raise TrackError("silent: no sample above -60 dBFS")
    if state["high"] - state["low"] < SILENT_PEAK:
        raise TrackError("silent: a constant level (DC offset), no sound above -60 dBFS")
    start, end = trim_bounds(state["block_energy"], n_samples, silence_threshold) if trim_silence else (0, n_samples)
    seconds = (end - start) / sample_rate
    if seconds < min_seconds:
        what = f"{seconds:.2f} s" + (" after trimming silence" if trim_silence and end - start < n_samples else "")
        if warning:
            raise TrackError(f"truncated or corrupt ({warning}); only {what} decodable, "
                             f"below min_seconds={min_seconds}")
        raise TrackError(f"too short: {what}, below min_seconds={min_seconds}")
    codes = state["codes"]
    del codes[end:]  # in place: no second copy of a 2-hour track's codes
    del codes[:start]
    if warning:
        warning = f"partly decodable ({warning}); kept {seconds:.1f} s"
    return {"codes": bytes(codes), "n_samples": end - start, "seconds": seconds, "warning": warning}


def process_long_input(item, settings, data=None):
    """:func:`process_input` for a file above :data:`STREAM_ABOVE_BYTES`: hashed and decoded as a stream (from
    its path, or from ``data`` on a Spark executor), ffmpeg first, libsndfile when ffmpeg refuses it."""
    if data is None:
        file_stat = os.stat(item["path"])
        if not stat.S_ISREG(file_stat.st_mode):
            raise TrackError("not a regular file (a device, FIFO or socket): not read")
        with open(item["path"], "rb") as f:
            head = f.read(64)
        item = dict(item, sha256=manifest.sha256_file(item["path"]),
                    stat=(file_stat.st_size, file_stat.st_mtime_ns))
        source = item["path"]
    else:
        head, source = bytes(data[:64]), data
        item = dict(item, sha256=hashlib.sha256(data).hexdigest())
    check_bytes(head)
    try:
        result, decoder = codes_from_stream(lambda: audio.stream_decode(source), **settings), "ffmpeg"
    except audio.DecodeError as error:
        try:
            result = codes_from_stream(lambda: audio.stream_decode_with_libsndfile(source), **settings)
            decoder = LIBSNDFILE
        except audio.DecodeError:
            raise TrackError(str(error)) from None
    return item, dict(result, decoder=decoder)


def process_input(item, settings, data=None):
    """Turn one input dict into codes; never raises. Returns (item with its sha256, result or None, reason).

    The file is read once: its bytes give both the sha256 recorded in the dataset and the audio. A Spark
    executor passes the bytes it already has as ``data`` (``item["path"]`` may then be a URI).
    """
    return process_batch([item], settings, None if data is None else [data])[0]


def process_batch(items, settings, datas=None):
    """:func:`process_input` for several inputs, their audio decoded by one ffmpeg process (see
    :func:`local.audio.decode_many`: the same samples as one file at a time, at about half the CPU for short
    clips). A Spark executor passes the files' bytes as ``datas``; otherwise each is read from its path."""
    results, pending = [None] * len(items), []
    for k, item in enumerate(items):
        try:
            size = len(datas[k]) if datas is not None else file_size(item)
            if size > STREAM_ABOVE_BYTES:  # a long file: streamed, never whole in memory
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
    decoded = audio.decode_many([data for _, _, data in pending]) if pending else []
    for (k, item, data), outcome in zip(pending, decoded):
        try:
            decoder = "ffmpeg"
            if isinstance(outcome, audio.DecodeError):  # an m4a indexed at its end, an Ogg only libsndfile reads
                outcome, decoder = decode_after_ffmpeg_refused(outcome, data, item["path"])
            results[k] = (item, dict(codes_from_samples(*outcome, **settings), decoder=decoder), "")
        except Exception as e:
            results[k] = (item, None, failure_reason(e))
    return results


def read_regular_file(path):
    """The bytes and (size, mtime_ns) of ``path``; TrackError unless it is a regular file (no device, FIFO)."""
    try:
        file_stat = os.stat(path)
    except FileNotFoundError:
        raise
    if not stat.S_ISREG(file_stat.st_mode):
        raise TrackError("not a regular file (a device, FIFO or socket): not read")
    with open(path, "rb") as f:
        data = f.read()
    return data, (file_stat.st_size, file_stat.st_mtime_ns)


def input_path_problem(raw_dir, path):
    """Why stage 2 must not open ``path`` listed under ``raw_dir`` (outside it, a special file), or ""."""
    root = os.path.realpath(raw_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        return f"outside raw_dir (resolves to {real}): not read"
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return ""  # missing: reported as such when processed
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, FIFO or socket): not read"
    return ""


def settings_problem(sample_rate, silence_threshold, min_seconds):
    """One line naming the stage-2 key whose value is out of range, or ""."""
    if not MIN_SAMPLE_RATE_HZ <= sample_rate <= MAX_SAMPLE_RATE_HZ:
        return (f"sample_rate={sample_rate} must be between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ} Hz "
                f"(e.g. --sample_rate=16000)")
    if not (isinstance(silence_threshold, (int, float)) and math.isfinite(silence_threshold)
            and 0 < silence_threshold <= 120):
        return (f"silence_threshold={silence_threshold} must be more than 0 and at most 120 dB below the peak "
                f"(e.g. --silence_threshold=60)")
    if not (isinstance(min_seconds, (int, float)) and math.isfinite(min_seconds) and min_seconds > 0):
        return f"min_seconds={min_seconds} must be more than 0 seconds (e.g. --min_seconds=1)"
    return ""


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
    """Bytes of an input's file (0 when it is missing: process_input reports that)."""
    try:
        return os.path.getsize(item["path"])
    except OSError:
        return 0


def run_inputs(inputs, settings, workers=1, progress=True):
    """Yield :func:`process_input` results for ``inputs``, in batches over a pool of ``workers`` processes,
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
        # fork: the stage scripts are straight-line code, which spawn/forkserver would run again in workers
        context = multiprocessing.get_context("fork")
        with context.Pool(workers) as pool:
            # in input order (sorted by genre): a new genre gets its id when its first track is kept
            for results in pool.imap(process_batch_star, jobs, chunksize=1):
                for result in results:
                    yield result
                    bar.update()
    bar.close()


def assign_genre_ids(known_genres, new_genres):
    """Genres list (index = genre_id): the known ones in their order, then new ones sorted."""
    genres = list(known_genres)
    genres += sorted(set(new_genres) - set(genres))
    return genres


def plan_tracks(inputs, existing, known_genres, valid_fraction, test_fraction, split_seed, sha_of):
    """Decide what a run does; shared by the local stage and the Spark job, so both split alike.

    Parameters
    ----------
    inputs : list of input dicts (:func:`list_inputs`)
    existing : dict track_id -> index row of the dataset so far (with ``source_sha256``)
    known_genres : the dataset's ``genres`` list so far (kept in order while any old track remains)
    sha_of : function(item) -> the sha256 of the item's file ("" if missing); called only for tracks
        already in the dataset

    Returns a dict: ``todo`` (the inputs to process, each with ``split`` and ``split_from_source``),
    ``skipped`` (count of unchanged tracks), ``changed`` (track ids whose old row must go before the new
    one is written), ``genres`` (the new genres list, index = genre_id).
    """
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
            item["split"] = hash_split(item["track_id"], valid_fraction, test_fraction, split_seed)
    ensure_train_per_genre(todo, kept.values(), split_seed)
    genres = assign_genre_ids(known_genres if kept else [],
                              [r["genre"] for r in kept.values()] + [i["genre"] for i in todo])
    return {"todo": todo, "skipped": skipped, "changed": changed, "genres": genres,
            "kept_genres": assign_genre_ids(known_genres if kept else [], [r["genre"] for r in kept.values()])}


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


def track_row(item, result, genres, sample_rate):
    """The dataset row (:data:`local.dataset_store.TRACK_SCHEMA` columns) of a processed input."""
    return {"track_id": item["track_id"], "genre": item["genre"], "genre_id": genres.index(item["genre"]),
            "split": item["split"], "sample_rate": int(sample_rate), "n_samples": int(result["n_samples"]),
            "codes": result["codes"], "source_path": item["path"], "source_sha256": item["sha256"]}


def dataset_info(index, genres, sample_rate, quantization_channels, trim_silence, silence_threshold, min_seconds,
                 valid_fraction, test_fraction, split_seed):
    """The ``dataset.json`` dict for the dataset's index rows and the settings that made it."""
    from local import dataset_store as store
    return store.summarize(index, sample_rate, quantization_channels, genres, extra={
        "trim_silence": trim_silence, "silence_threshold_db": silence_threshold, "min_seconds": min_seconds,
        "valid_fraction": valid_fraction, "test_fraction": test_fraction, "split_seed": split_seed})


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
        except (OSError, ValueError, TypeError):
            self.known = {}

    def sha_of(self, path):
        """The sha256 of the file at ``path`` now ("" if missing or not a regular file)."""
        try:
            st = os.stat(path)
        except OSError:
            return ""
        if not stat.S_ISREG(st.st_mode):
            return ""
        cached = self.known.get(path)
        if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return cached[2]
        sha = manifest.sha256_file(path)
        self.known[path] = (st.st_size, st.st_mtime_ns, sha)
        return sha

    def remember(self, path, file_stat, sha):
        """Record the (size, mtime_ns) a file had when the bytes hashed to ``sha`` were read."""
        if file_stat:
            self.known[path] = (int(file_stat[0]), int(file_stat[1]), sha)

    def save(self):
        from local.fileio import write_json_atomic
        write_json_atomic(self.path, {k: list(v) for k, v in sorted(self.known.items())})


SETTINGS_METADATA_KEY = b"waveforms.settings"  # the Parquet key-value metadata each part carries


def made_with_problem(out_dir, settings, info):
    """One line when ``out_dir`` holds rows made with other settings than ``settings``, else "".

    The rows are the truth: each part's metadata (:data:`SETTINGS_METADATA_KEY`) and the rows' own
    ``sample_rate``; ``dataset.json`` (``info``) only for parts without metadata. ``settings``: the dict
    :func:`part_settings` makes.
    """
    from local import dataset_store as store
    parts = store.list_parts(out_dir)
    if not parts:
        return ""
    made = []
    for part in parts:
        metadata = store.open_part(part).schema_arrow.metadata or {}
        if SETTINGS_METADATA_KEY in metadata:
            made.append(json.loads(metadata[SETTINGS_METADATA_KEY]))
        elif info:
            made.append({k: info.get(k) for k in ("sample_rate", "quantization_channels", "trim_silence",
                                                   "min_seconds")} | {"silence_threshold": info.get(
                                                       "silence_threshold_db")})
    for rate in {int(r["sample_rate"]) for r in store.read_index(out_dir, columns=["sample_rate"])}:
        made.append({"sample_rate": rate})
    for old in made:
        for key, value in settings.items():
            if key in old and old[key] is not None and old[key] != value:
                return (f"{out_dir} holds tracks made with {key}={old[key]}; use another out_dir or "
                        f"--{key}={old[key]}")
    return ""


def part_settings(sample_rate, quantization_channels, trim_silence, silence_threshold, min_seconds):
    """The settings every row of a dataset must share, as written into each part's metadata."""
    return {"sample_rate": int(sample_rate), "quantization_channels": int(quantization_channels),
            "trim_silence": bool(trim_silence), "silence_threshold": float(silence_threshold),
            "min_seconds": float(min_seconds)}


def preprocess(raw_dir, out_dir, sample_rate=16000, quantization_channels=256, trim_silence=True,
               silence_threshold=60.0, min_seconds=1.0, valid_fraction=0.1, test_fraction=0.1, split_seed=0,
               workers=1, rows_per_part=64, progress=True):
    """Stage 2: turn the audio under ``raw_dir`` into the Parquet dataset in ``out_dir``.

    Idempotent: tracks already in the dataset with the same source sha256 are skipped; a changed file
    replaces its old row. Returns a summary dict: processed, skipped, failed [(path, reason)],
    warnings [(path, text)], dataset (the dataset.json dict).
    """
    from local import locks
    with locks.acquire_lock(out_dir, "stage 2"):  # a second writer is refused, never merged
        return preprocess_locked(raw_dir, out_dir, sample_rate, quantization_channels, trim_silence,
                                 silence_threshold, min_seconds, valid_fraction, test_fraction, split_seed, workers,
                                 rows_per_part, progress)


def preprocess_locked(raw_dir, out_dir, sample_rate, quantization_channels, trim_silence, silence_threshold,
                      min_seconds, valid_fraction, test_fraction, split_seed, workers, rows_per_part, progress):
    """:func:`preprocess` while holding ``out_dir``'s lock."""
    from local import dataset_store as store

    try:
        info = store.read_dataset_json(out_dir) or {}
    except store.DamagedFile:  # the rows are the truth: it is rewritten from them at the end
        info = {}
    made_with = part_settings(sample_rate, quantization_channels, trim_silence, silence_threshold, min_seconds)
    problem = made_with_problem(out_dir, made_with, info)
    if problem:
        raise ValueError(problem)
    store.remove_stale_temp_parts(out_dir)
    failed = []
    inputs = []
    for item in list_inputs(raw_dir):
        refused = input_path_problem(raw_dir, item["path"])
        if refused:
            failed.append((item["path"], refused))
        else:
            inputs.append(item)
    existing = {r["track_id"]: r for r in store.read_index(out_dir)}
    fingerprints = SourceFingerprints(out_dir)

    genres_so_far = known_genres(existing.values(), info.get("genres", []))
    plan = plan_tracks(inputs, existing, genres_so_far, valid_fraction, test_fraction, split_seed,
                       lambda item: fingerprints.sha_of(item["path"]))
    todo, skipped, genres = plan["todo"], plan["skipped"], list(plan["kept_genres"])
    # by genre name (stable): new genres then get their ids in sorted order, as plan["genres"] gives them
    # (the Spark job's), only without the genres none of whose tracks was kept
    todo = sorted(todo, key=lambda item: item["genre"])
    if plan["changed"]:  # the input file changed since it was processed: its old row goes, the new one comes
        store.drop_tracks(out_dir, plan["changed"])

    settings = {"sample_rate": sample_rate, "quantization_channels": quantization_channels,
                "trim_silence": trim_silence, "silence_threshold": silence_threshold, "min_seconds": min_seconds}
    writer = store.PartWriter(out_dir, rows_per_part=rows_per_part,
                              metadata={SETTINGS_METADATA_KEY: json.dumps(made_with).encode()})
    warnings, processed, with_libsndfile = [], 0, 0
    for item, result, reason in run_inputs(todo, settings, workers, progress):
        if result is None:
            failed.append((item["path"], reason))
            continue
        if result["warning"]:
            warnings.append((item["path"], result["warning"]))
        if item["genre"] not in genres:  # a genre is listed once it has a kept track: never an empty one
            genres.append(item["genre"])
        writer.write(track_row(item, result, genres, sample_rate))
        fingerprints.remember(item["path"], item.get("stat"), item["sha256"])
        processed += 1
        with_libsndfile += result.get("decoder") == LIBSNDFILE
    writer.close()
    fingerprints.save()

    index = store.read_index(out_dir)
    dataset = dataset_info(index, genres, sample_rate, quantization_channels, trim_silence, silence_threshold,
                           min_seconds, valid_fraction, test_fraction, split_seed)
    from local.config import write_json_atomic
    write_json_atomic(os.path.join(out_dir, "dataset.json"), dataset)
    store.write_failures(out_dir, failed)
    return {"processed": processed, "skipped": skipped, "failed": failed, "warnings": warnings,
            "dataset": dataset, "decoded_with_libsndfile": with_libsndfile}
