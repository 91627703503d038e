"""Benchmark stage 2: audio-seconds turned into codes per wall-second, with 1 and 2 worker processes.

Run:
  .venv/bin/python bench/bench_preprocessing.py              # 8 FMA-like clips: 30 s, 44.1 kHz stereo mp3
  .venv/bin/python bench/bench_preprocessing.py --tracks=16 --seconds=30

Prints one JSON line: realtime_factor_1_worker, realtime_factor_2_workers, scaling (their ratio), the CPU cores
each kept busy (ffmpeg's threads included), and for the resampler choice the seconds per clip of each step
(ffmpeg decode, soxr HQ in numpy, ffmpeg's own soxr).
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.config import configure  # noqa: E402

tracks = 16  # clips in the generated set (4 min of audio per worker)
seconds = 30.0  # length of each clip, seconds (FMA's clips are 30 s)
source_rate = 44100  # Hz of the generated mp3s
sample_rate = 16000  # Hz of the codes
workers = [1, 2]  # pool sizes to compare

# -----------------------------------------------------------------------------


def cpu_seconds():
    """CPU time of this process and its finished children (ffmpeg, pool workers), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def resampler_timings(clip, sample_rate, repeats=3):
    """Seconds per clip (best of ``repeats``) of each way to get ``sample_rate`` Hz mono: ffmpeg decoding at
    the file's rate, then soxr HQ in numpy (what stage 2 does), vs ffmpeg decoding and resampling itself."""
    from local import audio
    data = open(clip, "rb").read()
    timings = {"decode": [], "soxr_numpy": [], "ffmpeg_soxr": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        samples, rate, _ = audio.decode_audio(data)
        t1 = time.perf_counter()
        audio.resample(audio.to_mono(samples), rate, sample_rate)
        t2 = time.perf_counter()
        subprocess.run([audio.ffmpeg_binary(), "-v", "error", "-i", "pipe:0", "-ac", "1", "-af",
                        f"aresample={sample_rate}:resampler=soxr:precision=20", "-f", "f32le", "pipe:1"],
                       input=data, capture_output=True, check=True)
        t3 = time.perf_counter()
        for key, value in zip(timings, (t1 - t0, t2 - t1, t3 - t2)):
            timings[key].append(value)
    return {key: min(values) for key, values in timings.items()}


def main(argv=None):
    config = configure(dict(globals()), argv)
    from bench.clips import write_fma_like_clips
    from local import demo_corpus, preprocessing
    tracks, sample_rate, workers = config["tracks"], config["sample_rate"], config["workers"]
    work = tempfile.mkdtemp(prefix="bench-preprocessing-")
    raw = os.path.join(work, "raw")
    audio_seconds = write_fma_like_clips(raw, tracks, config["seconds"], config["source_rate"])
    # warm up once (imports, numba's first compile) so that no pool size pays for it in its timing
    preprocessing.preprocess(os.path.join(raw, demo_corpus.DEMO_GENRES[0]), os.path.join(work, "warmup"),
                             sample_rate=sample_rate, workers=1, progress=False)
    results, cores_busy = {}, {}
    for n in workers:
        start, start_cpu = time.perf_counter(), cpu_seconds()
        summary = preprocessing.preprocess(raw, os.path.join(work, f"out{n}"), sample_rate=sample_rate, workers=n,
                                           progress=False)
        elapsed = time.perf_counter() - start
        assert summary["processed"] == tracks, summary["failed"]
        results[n] = audio_seconds / elapsed
        cores_busy[n] = (cpu_seconds() - start_cpu) / elapsed
    timings = resampler_timings(os.path.join(raw, demo_corpus.DEMO_GENRES[0], "clip000.mp3"), sample_rate)
    shutil.rmtree(work)

    print(json.dumps({
        "tracks": tracks, "audio_seconds": audio_seconds,
        "source": f"{config['source_rate']} Hz stereo mp3 -> {sample_rate} Hz codes",
        "realtime_factor_1_worker": round(results.get(1, 0.0), 1),
        "realtime_factor_2_workers": round(results.get(2, 0.0), 1),
        "scaling": round(results.get(2, 0.0) / results[1], 2) if results.get(1) else None,
        "cores_busy_1_worker": round(cores_busy.get(1, 0.0), 2),
        "cores_busy_2_workers": round(cores_busy.get(2, 0.0), 2),
        "realtime_factor_per_cpu_second": round(audio_seconds * len(workers) / sum(
            cores_busy[n] * audio_seconds / results[n] for n in workers), 1),
        "decode_seconds_per_clip": round(timings["decode"], 4),
        "soxr_hq_numpy_seconds_per_clip": round(timings["soxr_numpy"], 4),
        "ffmpeg_decode_and_soxr_seconds_per_clip": round(timings["ffmpeg_soxr"], 4),
    }))


if __name__ == "__main__":
    main()
