"""Writing audio: 16-bit WAV files and encoded files (mp3, ogg, ...) through ffmpeg.

Waveforms are float32 numpy arrays in [-1, 1]; sample rates in Hz.
"""
import errno
import os
import subprocess

import numpy as np

from local.audio.ffmpeg import ffmpeg_binary
from local.audio.waveform import to_pcm16
from local.core.fileio import atomic_path


def encode_audio(y, sample_rate, path, codec_args=("-c:a", "libmp3lame", "-b:a", "128k"), metadata=None):
    """Encode mono float audio ``y`` (n_samples,) at ``sample_rate`` Hz to ``path`` through ffmpeg's stdin.

    ``metadata`` is a dict of tags (genre, title, artist...). The output format follows ``path``'s
    extension unless ``codec_args`` has ``-f``. Raises RuntimeError with ffmpeg's message on failure, OSError
    (ENOSPC/EDQUOT, naming ``path``) when ffmpeg says the disk is full.
    """
    command = [ffmpeg_binary(), "-hide_banner", "-v", "error", "-y", "-f", "f32le", "-ar", str(int(sample_rate)),
               "-ac", "1", "-i", "pipe:0", *codec_args]
    for key, value in (metadata or {}).items():
        command += ["-metadata", f"{key}={value}"]
    command.append(path)
    result = subprocess.run(command, input=np.asarray(y, dtype="<f4").tobytes(), capture_output=True)
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip()
        for code in (errno.ENOSPC, errno.EDQUOT):  # a full disk is the stage's one-line disk-full message
            if os.strerror(code) in said:
                raise OSError(code, os.strerror(code), path)
        raise RuntimeError(f"ffmpeg could not write {path}: {said}")


def write_wav(path, y, sample_rate):
    """Write mono float audio ``y`` (n,) as 16-bit PCM WAV at ``sample_rate`` Hz, atomically; return ``path``.

    Scaled by the peak only when it exceeds 1 (:func:`to_pcm16`), so nothing clips.
    """
    import wave
    with atomic_path(path) as tmp, wave.open(tmp, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(to_pcm16(y).astype("<i2").tobytes())
    return path
