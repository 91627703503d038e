"""Test helpers: real encoded audio made with ffmpeg at test time, and running the stage scripts."""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
FIXTURES = os.path.join(ROOT, "test", "fixtures")  # real recordings, with their licences (README.md there)
FIXTURE_OGG = os.path.join(FIXTURES, "ffmpeg_refuses.ogg")  # a real Ogg that ffmpeg refuses, libsndfile reads


def tone(seconds=2.0, sample_rate=22050, channels=1, freq_hz=440.0, amplitude=0.5, seed=0):
    """A test signal: a sine plus a little noise; (n_samples, channels) float32, channels decorrelated."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    columns = [amplitude * np.sin(2 * np.pi * freq_hz * (1 + 0.5 * c) * t) + 0.01 * rng.standard_normal(len(t))
               for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def encode(path, samples, sample_rate, codec_args=(), metadata=None):
    """Encode float samples (n, channels) with ffmpeg to ``path`` (format from the extension); return path."""
    samples = np.asarray(samples, dtype="<f4")
    if samples.ndim == 1:
        samples = samples[:, None]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    command = ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac",
               str(samples.shape[1]), "-i", "pipe:0", *codec_args]
    for key, value in (metadata or {}).items():
        command += ["-metadata", f"{key}={value}"]
    subprocess.run(command + [path], input=samples.tobytes(), check=True, capture_output=True)
    return path


def make_audio(path, seconds=2.0, sample_rate=22050, channels=1, freq_hz=440.0, metadata=None, seed=0):
    """Write a real encoded file (mp3/flac/ogg/wav/m4a/aiff by extension) of a tone; return its path."""
    return encode(path, tone(seconds, sample_rate, channels, freq_hz, seed=seed), sample_rate, metadata=metadata)


def run_script(script, *args, cwd=ROOT, timeout=600, env=None):
    """Run a stage script with this Python; return the CompletedProcess (text, never raises on failure)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([PYTHON, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def refusal(check_config, config, key, value):
    """The message ``check_config`` refuses ``config`` with ``key`` set to ``value`` (it must accept ``config``
    as it is); the message must be one line naming ``key`` first and no other key of ``config``."""
    from local.core.config import ConfigError
    check_config(config)
    try:
        check_config(dict(config, **{key: value}))
    except ConfigError as e:
        message = str(e)
    else:
        raise AssertionError(f"{key}={value!r} was accepted")
    assert message.startswith(f"{key}={value!r} ") and "\n" not in message, message
    assert [k for k in config if f"{k}=" in message] == [key], message
    return message
def make_broken_files(folder, scratch):
    """The broken inputs a real music folder holds, in ``folder``: an empty file, an HTML page saved as .mp3,
    garbage bytes, a truncated mp3 with 0.5 s left, silence and a too-short clip (``scratch``: a folder for the
    whole mp3 the truncated one is cut from). Returns their file names."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "empty.mp3"), "wb"):
        pass
    with open(os.path.join(folder, "page.mp3"), "wb") as f:
        f.write(b"<!DOCTYPE html><html><body>429 Too Many Requests</body></html>")
    with open(os.path.join(folder, "garbage.mp3"), "wb") as f:
        f.write(bytes(range(256)) * 40)
    encode(os.path.join(folder, "silence.wav"), np.zeros((32000, 1), np.float32), 16000)
    make_audio(os.path.join(folder, "short.flac"), seconds=0.3)
    with open(make_audio(os.path.join(scratch, "whole.mp3"), seconds=6.0), "rb") as f:
        data = f.read()
    with open(os.path.join(folder, "truncated.mp3"), "wb") as f:
        f.write(data[: len(data) // 12])  # about 0.5 s decodable
    return ["empty.mp3", "page.mp3", "garbage.mp3", "silence.wav", "short.flac", "truncated.mp3"]


def run_on_small_disk(folder, command, size_kb=300, free_kb=50, timeout=300, env=None):
    """Run ``command`` (argv, from ROOT) with a ``size_kb`` tmpfs mounted at ``folder`` of which only about ``free_kb``
    is free (a filler file takes the rest): a full disk, made in a mount namespace of the command's own (unshare,
    as root or as a user), so nothing stays mounted whatever happens. Returns the CompletedProcess; skips the test
    with the reason when no such namespace or tmpfs can be made here."""
    import pytest
    os.makedirs(folder, exist_ok=True)
    script = ('mount -t tmpfs -o size="$1"k tmpfs "$0" && head -c "$2"k /dev/zero > "$0/.filler" 2>/dev/null; '
              'shift 2; exec "$@"')
    wrap = ["unshare", "-rm", "sh", "-c", script, str(folder), str(size_kb), str(size_kb - free_kb)]
    probe = subprocess.run(wrap + ["sh", "-c", 'df -k "$0" | tail -1', str(folder)], capture_output=True, text=True)
    if probe.returncode != 0 or "tmpfs" not in probe.stdout:
        pytest.skip(f"cannot make a small full disk here (unshare -rm + tmpfs): {probe.stderr.strip()[:200]}")
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(wrap + list(command), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
