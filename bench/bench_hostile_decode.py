"""Benchmark the decode bombs of issue 20: peak memory of stage 2's one decode path on two small hostile files.

Run:
  .venv/bin/python bench/bench_hostile_decode.py                    # the two files of the issue
  .venv/bin/python bench/bench_hostile_decode.py --flac_minutes=20   # a shorter FLAC, quicker to build

Builds, with the project's ffmpeg: a 96 kB 8-bit WAV whose header claims 1 Hz (27 hours once resampled to
16 kHz) and a FLAC of ``flac_minutes`` of 44.1 kHz stereo near-silence (2 s of tone, then digital silence;
under 1 MB). Each is decoded by :func:`local.audio.decoding.decode_track` (the path of stage 2, ``--audio``,
``--similar_to``, the judge and the Spark executors) in a fresh process whose address space is capped at
``cap_gb`` (the code before issue 20 reached 21 GB on the WAV). Prints one JSON line: for each file its bytes,
the outcome (codes kept or the reason refused) and ``peak_rss_mb`` (VmHWM of that process).
Run it with PYTHONPATH pointing at another checkout to measure that code (the old one: see docs/hostile-inputs.md).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.core.config import configure

flac_minutes = 90.0  # length of the near-silent FLAC, minutes
cap_gb = 8  # address-space cap of each measured process, GB (keeps a bomb from taking the machine)

# -----------------------------------------------------------------------------

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]) << 30, int(sys.argv[2]) << 30))
from local.audio import decoding
track, reason = decoding.decode_track(sys.argv[1])
peak_kb = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"kept_seconds": track and round(track["seconds"], 2), "reason": reason[:120],
                  "peak_rss_mb": round(peak_kb / 1024, 1)}))
"""


def one_hz_wav(path, n_frames=96000):
    body = bytes((128 + 100 * ((i % 7) - 3)) & 255 for i in range(n_frames))
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + n_frames) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
                + struct.pack("<HHIIHH", 1, 1, 1, 1, 1, 8) + b"data" + struct.pack("<I", n_frames) + body)
    return path


def near_silent_flac(path, minutes):
    from local.audio import ffmpeg as audio
    subprocess.run([audio.ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=f=440:d={minutes * 60:g}:r=44100", "-af", "volume=enable='gt(t,2)':volume=0", "-ac", "2",
                    "-compression_level", "8", path], check=True)
    return path


def measure(path):
    result = subprocess.run([sys.executable, "-c", CHILD, path, str(cap_gb)], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH") or os.getcwd()))
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1][:200]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    configure(globals(), argv)
    with tempfile.TemporaryDirectory() as folder:
        files = {"wav_1_hz": one_hz_wav(os.path.join(folder, "one_hz.wav")),
                 f"flac_{flac_minutes:g}_min_near_silence": near_silent_flac(os.path.join(folder, "quiet.flac"),
                                                                            flac_minutes)}
        out = {name: dict(bytes=os.path.getsize(path), **measure(path)) for name, path in files.items()}
    print(json.dumps(dict(out, cap_gb=cap_gb)))


if __name__ == "__main__":
    main()
