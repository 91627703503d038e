"""Any audio file to mu-law codes, as stage 2 makes them: read, check, decode, mono, resample, trim, quantize.

One decode path: :func:`process_batch` (a batch of files per ffmpeg process) reads, checks and decodes every
input, on a laptop and on a Spark executor alike; :func:`decode_track` is that path for one file (a path or
its bytes), for anyone who wants a file as stage 2 would see it (stage 4's ``--audio``, the judge). A file
ffmpeg refuses is tried with libsndfile; a long file is decoded, resampled and trimmed in chunks
(:func:`track_from_stream`), so memory holds its codes only. What stage 2 does with the tracks (inputs,
splits, the dataset) is local/dataset/settings.py's.

Internal names carry units: ``_seconds``, ``_db``, ``_bytes``; where a size is shown to a person it is in
MB = 10**6 bytes.
"""
import dataclasses
import functools
import hashlib
import os
import stat

import numpy as np

from local.audio import ffmpeg as audio_ffmpeg
from local.audio import waveform as audio_waveform
from local.store import manifest

SILENT_PEAK = 10 ** (-60 / 20)  # a file whose peak is below -60 dBFS is silence, not music
LIBSNDFILE = "libsndfile"  # result["decoder"] of a file ffmpeg refused and libsndfile decoded
MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ = 1000, 192000
# A file larger than this is decoded, resampled and trimmed in chunks (see track_from_stream), so a 2-hour mix
# needs memory for its codes (1 byte per sample) only; smaller ones are decoded whole, a batch per ffmpeg.
# 8 MB is ~8 min of 128 kbps mp3, ~47 s of CD-quality WAV.
STREAM_ABOVE_BYTES = 8 << 20
# ... and a smaller file whose decoded audio is longer than this (a FLAC of near-silence, a WAV header claiming
# 1 Hz) is streamed too: the whole decode stops holding it at this length (audio_ffmpeg.TooLongToHold), so peak memory
# is bounded by the decoded length, whatever the size (audio_ffmpeg.WHOLE_DECODE_MAX_BYTES, 128 MB of float PCM,
# stops it sooner for many channels or high rates: ~6 min of 44.1 kHz stereo).
WHOLE_DECODE_MAX_SECONDS = 600
MIN_FILE_RATE_HZ, MAX_FILE_RATE_HZ = 1000, 768000  # a file's own rate outside these is a hostile header, not audio
TRIM_FRAME, TRIM_HOP = 2048, 512  # librosa.effects.trim's frame and hop (audio_waveform.trim_silence uses them too)
MISSING_REASON = "file not found (listed in the manifest but missing)"
SPECIAL_FILE_REASON = "not a regular file (a device, FIFO or socket): not read"
HTML_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{")


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

    @classmethod
    def from_dict(cls, info):
        """The settings recorded in ``info``: a dataset.json dict (stage 2's settings among its other keys) or a
        tagger's model.json ``decode`` dict; a key not recorded (an older file) takes its default. A file
        decoded later with them (a tagger tagging it) gets the very codes stage 2 would have given it."""
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        return cls(**{name: kind(info[name]) for name, kind in kinds.items() if name in info})


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
    its end), else with libsndfile (:func:`local.audio.ffmpeg.decode_with_libsndfile`; real Ogg Vorbis files of
    libVorbis 1.3.1 are refused by ffmpeg and played by libsndfile).

    Returns ((samples, sample_rate, warning), decoder) with decoder "ffmpeg" or :data:`LIBSNDFILE`;
    raises TrackError with ffmpeg's reason when neither can decode it.
    """
    if path and os.path.isfile(path):
        try:
            return audio_ffmpeg.decode_audio(path, max_seconds=WHOLE_DECODE_MAX_SECONDS), "ffmpeg"
        except audio_ffmpeg.DecodeError:
            pass
    try:
        return audio_ffmpeg.decode_with_libsndfile(data, WHOLE_DECODE_MAX_SECONDS), LIBSNDFILE
    except audio_ffmpeg.DecodeError:
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
        return audio_ffmpeg.decode_audio(fallback_path, max_seconds=WHOLE_DECODE_MAX_SECONDS)
    except audio_ffmpeg.DecodeError as e:
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
    y = audio_waveform.resample(audio_waveform.to_mono(samples), file_rate, settings.sample_rate)
    y = audio_waveform.peak_normalize(y)
    if y.size == 0 or float(np.max(np.abs(y))) < SILENT_PEAK:
        raise TrackError("silent: no sample above -60 dBFS")
    if float(np.max(y)) - float(np.min(y)) < SILENT_PEAK:  # a constant (DC) level is no sound either
        raise TrackError("silent: a constant level (DC offset), no sound above -60 dBFS")
    decoded_seconds = len(y) / settings.sample_rate
    if settings.trim_silence:
        y = audio_waveform.trim_silence(y, silence_threshold_db=settings.silence_threshold_db)
    seconds = len(y) / settings.sample_rate
    check_length(seconds, trimmed=seconds < decoded_seconds, warning=warning, settings=settings)
    codes = audio_waveform.mu_law_encode(y, settings.quantization_channels)
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
    decoder's warning (:func:`local.audio.ffmpeg.stream_decode`). ``divide_by``: the peak to normalize by (None: none).
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
        state["codes"].extend(audio_waveform.mu_law_encode(y, quantization_channels).tobytes())
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
        mono = audio_waveform.to_mono(chunk)
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

    ``open_chunks()`` starts a new decode (a generator as :func:`local.audio.ffmpeg.stream_decode` returns);
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
        track, decoder = track_from_stream(lambda: audio_ffmpeg.stream_decode(source), settings), "ffmpeg"
    except audio_ffmpeg.DecodeError as error:
        try:
            track = track_from_stream(lambda: audio_ffmpeg.stream_decode_with_libsndfile(source), settings)
            decoder = LIBSNDFILE
        except audio_ffmpeg.DecodeError:
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
    :func:`local.audio.ffmpeg.decode_many`: the same samples as one file at a time, at about half the CPU for short
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
    decoded = audio_ffmpeg.decode_many([data for _, _, data in pending], max_seconds=WHOLE_DECODE_MAX_SECONDS) \
        if pending else []
    for (k, item, data), outcome in zip(pending, decoded):
        try:
            decoder = "ffmpeg"
            if isinstance(outcome, audio_ffmpeg.DecodeError):  # an m4a indexed at its end, an Ogg only libsndfile reads
                outcome, decoder = decode_after_ffmpeg_refused(outcome, data, item["path"])
            if isinstance(outcome, audio_ffmpeg.TooLongToHold):
                raise outcome
            results[k] = (item, dict(track_from_samples(*outcome, settings, keep_waveform), decoder=decoder), "")
        except audio_ffmpeg.TooLongToHold as too_long:  # small file, long audio: streamed like a large file
            results[k] = long_result(item, settings, data, keep_waveform, too_long)
        except Exception as e:
            results[k] = (item, None, failure_reason(e))
    return results


def long_result(item, settings, data, keep_waveform, too_long):
    """The :func:`process_batch` result of an input whose decoded audio is too long to hold whole (``too_long``,
    audio_ffmpeg.TooLongToHold): decoded as a stream from its bytes ``data``; with ``keep_waveform``, refused."""
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


def file_size(item):
    """Bytes of an input's file (0 when it is missing: process_batch reports that)."""
    try:
        return os.path.getsize(item["path"])
    except OSError:
        return 0
