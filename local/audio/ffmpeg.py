"""Audio in and out: ffmpeg decoding through a pipe, mono downmix, resampling, silence trimming, mu-law.

Waveforms are float32 numpy arrays in [-1, 1]; codes are uint8 mu-law codes 0..255 (for the default
256 quantization channels), one per sample. Sample rates are in Hz.
"""
import contextlib
import functools
import os
import struct
import subprocess

import numpy as np

FFMPEG_TIMEOUT_SECONDS = 600  # no sane file takes longer to decode; a hostile one must not hang a worker


@functools.lru_cache(maxsize=1)
def ffmpeg_binary():
    """The ffmpeg used for decoding: ``$WAVEFORMS_FFMPEG``, else imageio-ffmpeg's static build, else ``ffmpeg``.

    The static build starts in about 10 ms where a distribution's dynamically linked ffmpeg takes about 80 ms
    (200+ shared libraries) - most of the time spent on a 30 s clip - and it is the same build on a laptop
    and on every Spark executor, so both decode to the same samples.
    """
    override = os.environ.get("WAVEFORMS_FFMPEG")
    if override:
        return override
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return "ffmpeg"


class DecodeError(Exception):
    """ffmpeg produced no audio for an input; the message says why in words a person understands."""


# A whole decode holds the file's PCM and its resampled copies at once: it is bounded by the decoded length, never
# by the file's size (a 96 kB WAV claiming 1 Hz is 27 hours; a 0.9 MB FLAC of near-silence is 90 minutes).
# Past either bound, a caller that passes ``max_seconds`` gets TooLongToHold and decodes the file as a stream.
WHOLE_DECODE_MAX_BYTES = 128 << 20  # decoded float PCM (~6 min of 44.1 kHz stereo, 12 min mono)


class TooLongToHold(Exception):
    """The decoded audio is longer than a whole decode may hold (the message says how long): stream it instead."""


def length_problem(frames, channels, sample_rate, max_seconds):
    """Why ``frames`` of ``channels`` at ``sample_rate`` Hz are too long to decode whole ("" if not): longer than
    ``max_seconds`` (None: no bound) or more than :data:`WHOLE_DECODE_MAX_BYTES` of float PCM."""
    if max_seconds is None:
        return ""
    seconds = frames / sample_rate if sample_rate > 0 else float("inf")
    if seconds > max_seconds or frames * max(channels, 1) * 4 > WHOLE_DECODE_MAX_BYTES:
        return f"{seconds:.0f} s of audio at {sample_rate} Hz, longer than a whole decode holds"
    return ""


def read_pcm(stream, max_seconds=None, piece_bytes=1 << 20):
    """Read the pcm_f32le WAV ffmpeg writes to a pipe from the file object ``stream`` to its end.

    Returns (samples (n, channels) float32, sample_rate Hz), or None when it is no WAV; once the audio is past
    :func:`length_problem`'s bound, the rest is read and dropped (ffmpeg finishes) and TooLongToHold is
    *returned*. Memory: the audio up to the bound, never more.
    """
    channels, sample_rate = read_wav_header(stream)
    if not channels:
        stream.read()
        return None
    frame_bytes, data, dropped = 4 * channels, bytearray(), 0
    for piece in iter(lambda: stream.read(piece_bytes), b""):
        if data is None:
            dropped += len(piece)
            continue
        data += piece
        if length_problem(len(data) // frame_bytes, channels, sample_rate, max_seconds):
            dropped, data = len(data), None
    if data is None:
        return TooLongToHold(length_problem(dropped // frame_bytes, channels, sample_rate, max_seconds))
    n = len(data) // frame_bytes
    return np.frombuffer(data, dtype="<f4", count=n * channels).reshape(n, channels), int(sample_rate)


def feed_stdin(process, source):
    """Write ``source`` (bytes, or a file's path) to ``process``'s stdin in 1 MB pieces, then close it; a
    process that stops reading ends the feed quietly (its own error says why)."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            for offset in range(0, len(source), 1 << 20):
                process.stdin.write(source[offset:offset + (1 << 20)])
        else:
            with open(source, "rb") as f:
                for piece in iter(lambda: f.read(1 << 20), b""):
                    process.stdin.write(piece)
    except OSError:
        pass
    finally:
        try:
            process.stdin.close()
        except OSError:
            pass


FFMPEG_NOT_INSTALLED = "ffmpeg is not installed (apt-get install ffmpeg)"


@contextlib.contextmanager
def ffmpeg_pcm(source, timeout_seconds=FFMPEG_TIMEOUT_SECONDS, *, path_through_pipe=False):
    """ffmpeg decoding ``source`` (a path, or the file's bytes: fed to its stdin by a thread) to a float32 WAV
    on its stdout, for the block: yields the running ``subprocess.Popen``, read its ``stdout``. Killed after
    ``timeout_seconds``. On leaving the block (also on an error or a closed generator) the process is waited
    for and its threads joined; then ``process.errors`` holds ffmpeg's non-empty stderr lines and
    ``process.timed_out`` whether the timeout killed it. DecodeError when ffmpeg is not installed.

    ``path_through_pipe``: feed a path's bytes through stdin too, as bytes are (see :func:`stream_decode`).
    """
    import threading

    from_pipe = path_through_pipe or isinstance(source, (bytes, bytearray, memoryview))
    command = [ffmpeg_binary(), "-hide_banner", "-v", "error", "-i", "pipe:0" if from_pipe else source,
               "-map", "0:a:0", "-vn", "-c:a", "pcm_f32le", "-f", "wav", "-bitexact", "pipe:1"]
    if not from_pipe:
        command.insert(1, "-nostdin")
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE if from_pipe else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise DecodeError(FFMPEG_NOT_INSTALLED) from None
    stderr = []
    threads = [threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)]
    threads += [threading.Thread(target=feed_stdin, args=(process, source), daemon=True)] if from_pipe else []
    for thread in threads:
        thread.start()
    timer = threading.Timer(timeout_seconds, process.kill)
    timer.start()
    try:
        yield process
    finally:
        process.stdout.close()
        process.wait()
        fired = not timer.is_alive()
        timer.cancel()
        for thread in threads:
            thread.join()
        process.timed_out = fired and process.returncode is not None and process.returncode < 0
        process.errors = [line.strip() for line in b"".join(stderr).decode("utf-8", "replace").splitlines()
                          if line.strip()]


def decode_audio(source, timeout_seconds=FFMPEG_TIMEOUT_SECONDS, max_seconds=None):
    """Decode any file ffmpeg reads into float32 PCM at the file's own sample rate and channel count.

    Parameters
    ----------
    source : str or bytes
        A file path, or the file's bytes (sent to ffmpeg through its stdin; no temp file).
    max_seconds : raise TooLongToHold rather than hold more decoded audio than this (or than
        :data:`WHOLE_DECODE_MAX_BYTES`); None: no bound (the caller knows the file is short)

    Returns
    -------
    samples : np.ndarray, shape (n_samples, n_channels), float32
    sample_rate : int, Hz
    warning : str
        ffmpeg's first error line when it decoded only part of the input (a truncated file), else "".

    Raises DecodeError when no audio at all can be decoded.
    """
    with ffmpeg_pcm(source, timeout_seconds) as process:
        outcome = read_pcm(process.stdout, max_seconds)
    if process.timed_out:
        raise DecodeError(f"ffmpeg did not finish decoding within {timeout_seconds} s")
    if isinstance(outcome, TooLongToHold):
        raise outcome
    errors = process.errors
    samples, sample_rate = outcome if outcome is not None else (None, 0)
    if samples is None or len(samples) == 0:
        reason = errors[-1] if errors else "no audio stream"
        raise DecodeError(f"ffmpeg cannot decode it: {short_ffmpeg_error(reason)}")
    warning = short_ffmpeg_error(errors[0]) if errors else ""
    return samples, sample_rate, warning


def decode_with_libsndfile(source, max_seconds=None):
    """Decode a file with libsndfile (the ``soundfile`` package) - the fallback for files ffmpeg refuses.

    Real Ogg Vorbis files written by libVorbis 1.3.1 are refused by ffmpeg ("Header processing failed")
    while libsndfile plays them. ``source``: a path or the file's bytes. Returns what :func:`decode_audio`
    returns: (samples (n_samples, n_channels) float32, sample_rate Hz, warning ""). Raises DecodeError, and
    TooLongToHold as :func:`decode_audio` does (from the header's length, before reading).
    """
    import io

    import soundfile
    try:
        handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
        with soundfile.SoundFile(handle) as f:
            too_long = length_problem(f.frames, f.channels, f.samplerate, max_seconds)
            if not too_long:
                samples, sample_rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except Exception as e:  # libsndfile's errors are RuntimeError/LibsndfileError/TypeError by version
        raise DecodeError(f"libsndfile cannot decode it either: {str(e).splitlines()[0][:200]}") from None
    if too_long:
        raise TooLongToHold(too_long)
    if len(samples) == 0:
        raise DecodeError("libsndfile found no audio in it")
    return np.ascontiguousarray(samples, dtype=np.float32), int(sample_rate), ""


STREAM_CHUNK_FRAMES = 1 << 16  # frames per chunk of a streamed decode (~1.5 s at 44.1 kHz, 0.5 MB stereo)


def stream_decode(source, chunk_frames=STREAM_CHUNK_FRAMES, timeout_seconds=FFMPEG_TIMEOUT_SECONDS):
    """Decode a file with ffmpeg in chunks, in memory bounded by ``chunk_frames`` whatever its length.

    ``source``: a path or the file's bytes; either is fed to ffmpeg's stdin by a thread, as
    :func:`decode_audio` gets bytes, so both give the samples :func:`decode_audio` gives for the bytes.
    Yields ``(samples (n, channels) float32, sample_rate Hz)`` chunks; after the last chunk, the generator's
    return value (``StopIteration.value``) is the warning ("" or ffmpeg's first error line when only part
    decoded). Raises DecodeError when no audio at all comes out.
    """
    # a path is fed through the pipe too: ffmpeg trims an mp3's end padding only when it reads a seekable
    # file, so a path and the same bytes (a Spark executor's) would decode to different lengths
    got = 0
    with ffmpeg_pcm(source, timeout_seconds, path_through_pipe=True) as process:
        channels, sample_rate = read_wav_header(process.stdout)
        frame_bytes = 4 * channels if channels else 0
        while channels:
            data = process.stdout.read(chunk_frames * frame_bytes)
            n = len(data) // frame_bytes
            if n:
                got += n
                yield np.frombuffer(data, dtype="<f4", count=n * channels).reshape(n, channels), sample_rate
            if len(data) < chunk_frames * frame_bytes:
                break
    errors = process.errors
    if not got:
        raise DecodeError(f"ffmpeg cannot decode it: {short_ffmpeg_error(errors[-1] if errors else 'no audio stream')}")
    return short_ffmpeg_error(errors[0]) if errors else ""


def read_wav_header(stream):
    """Read a WAV header from ``stream`` up to the start of its data: (channels, sample_rate); (0, 0) if none."""
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0, 0
    channels = sample_rate = 0
    while True:
        chunk = stream.read(8)
        if len(chunk) < 8:
            return 0, 0
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            return channels, int(sample_rate)
        body = stream.read(size + (size & 1))
        if chunk_id == b"fmt ":
            _, channels, sample_rate = struct.unpack("<HHI", body[:8])


def stream_decode_with_libsndfile(source, chunk_frames=STREAM_CHUNK_FRAMES):
    """:func:`stream_decode` through libsndfile (the fallback for files ffmpeg refuses); same chunks."""
    import io

    import soundfile
    handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with soundfile.SoundFile(handle) as f:
            rate = int(f.samplerate)
            while True:  # read() until empty, as soundfile.read does (blocks() pads Vorbis to its header's count)
                block = f.read(chunk_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                yield block, rate
    except Exception as e:
        raise DecodeError(f"libsndfile cannot decode it either: {str(e).splitlines()[0][:200]}") from None
    return ""


def decode_many(sources, timeout_seconds=FFMPEG_TIMEOUT_SECONDS, max_seconds=None):
    """Decode several files' bytes with one ffmpeg process; the same samples as :func:`decode_audio` on each.

    ffmpeg's start-up (linking, probing its codecs) costs about as much as decoding a 30 s clip, so short
    clips are decoded a batch at a time: input k arrives on its own pipe, its WAV leaves on another.

    Returns a list with, for each source, ``(samples, sample_rate, warning)`` or the :class:`DecodeError`
    that :func:`decode_audio` raises for it, or its TooLongToHold (``max_seconds`` as in :func:`decode_audio`:
    memory for the audio up to that bound per source, whatever the file's size). When ffmpeg reports any
    problem, each source is decoded on its own, so a broken file's error and a truncated file's warning are its own.
    """
    import threading

    sources = [bytes(s) for s in sources]
    if len(sources) == 1:
        return [decode_one_or_error(sources[0], timeout_seconds, max_seconds)]
    inputs = [os.pipe() for _ in sources]
    outputs = [os.pipe() for _ in sources]
    command = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-v", "error"]
    for read_end, _ in inputs:
        command += ["-i", f"pipe:{read_end}"]
    for k, (_, write_end) in enumerate(outputs):
        command += ["-map", f"{k}:a:0", "-vn", "-c:a", "pcm_f32le", "-f", "wav", "-bitexact", f"pipe:{write_end}"]
    results = [None] * len(sources)

    def feed(fd, data):
        try:
            with open(fd, "wb", closefd=True) as f:
                f.write(data)
        except OSError:  # ffmpeg stopped reading (it failed): the error shows in its exit status
            pass

    def drain(fd, k):
        with open(fd, "rb", closefd=True) as f:
            try:
                results[k] = read_pcm(f, max_seconds)
            except (ValueError, struct.error):  # a malformed header: decoded on its own below
                f.read()

    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE,
                                   pass_fds=[r for r, _ in inputs] + [w for _, w in outputs])  # its ends only
    except FileNotFoundError:
        for pair in inputs + outputs:
            for fd in pair:
                os.close(fd)
        return [DecodeError(FFMPEG_NOT_INSTALLED) for _ in sources]
    for read_end, _ in inputs:
        os.close(read_end)
    for _, write_end in outputs:
        os.close(write_end)
    threads = [threading.Thread(target=feed, args=(w, data), daemon=True) for (_, w), data in zip(inputs, sources)]
    threads += [threading.Thread(target=drain, args=(r, k), daemon=True) for k, (r, _) in enumerate(outputs)]
    for thread in threads:
        thread.start()
    try:
        stderr = process.communicate(timeout=timeout_seconds)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        stderr = process.communicate()[1]
    for thread in threads:
        thread.join()
    if process.returncode != 0 or stderr.strip():
        return [decode_one_or_error(source, timeout_seconds, max_seconds) for source in sources]
    decoded = []
    for outcome in results:
        if isinstance(outcome, TooLongToHold):
            decoded.append(outcome)
            continue
        if outcome is None or len(outcome[0]) == 0:  # not expected without an error message; be exact anyway
            return [decode_one_or_error(source, timeout_seconds, max_seconds) for source in sources]
        decoded.append((*outcome, ""))
    return decoded


def decode_one_or_error(source, timeout_seconds=FFMPEG_TIMEOUT_SECONDS, max_seconds=None):
    """:func:`decode_audio`, returning its DecodeError or TooLongToHold instead of raising it."""
    try:
        return decode_audio(source, timeout_seconds, max_seconds)
    except (DecodeError, TooLongToHold) as e:
        return e


def short_ffmpeg_error(line):
    """Drop ffmpeg's ``[mp3 @ 0x55...]`` prefixes and the input path from an error line."""
    if "] " in line and line.startswith("["):
        line = line.split("] ", 1)[1]
    if ": " in line and ("/" in line.split(": ", 1)[0] or line.startswith("pipe:")):
        line = line.split(": ", 1)[1]
    return line[:200]
