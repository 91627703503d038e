"""Benchmark stage 2: audio-seconds turned into codes per wall-second, with 1 and 2 worker processes.

Run:
  .venv/bin/python bench/bench_preprocessing.py              # 8 FMA-like clips: 30 s, 44.1 kHz stereo mp3
  .venv/bin/python bench/bench_preprocessing.py --tracks=16 --seconds=30

  .venv/bin/python bench/bench_preprocessing.py --rss_only=true  # only the long-file memory figures

Prints one JSON line: realtime_factor_1_worker, realtime_factor_2_workers, scaling (their ratio), the CPU cores
each kept busy (ffmpeg's threads included), and for the resampler choice the seconds per clip of each step
(ffmpeg decode, soxr HQ in numpy, ffmpeg's own soxr); and peak_rss_mb_<N>_min: the peak RSS of a fresh
process running stage 2 (1 worker) on one N-minute file (22,050 Hz mono 16-bit WAV of tone + noise, codes at
8 kHz: 0.48 MB of codes per minute), streamed; peak_rss_mb_<N>_min_whole: the same file decoded whole;
peak_rss_mb_<N>_min_twice: two such files (of the longest length) in one run (the first's codes must be freed
before the second is decoded); growth_bytes_per_sample: (peak RSS of the longest - of the shortest) / (their
difference in samples), with growth_goal_bytes_per_sample: the codes themselves, 1 byte per sample.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from local.core.config import configure

tracks = 16  # clips in the generated set (4 min of audio per worker)
seconds = 30.0  # length of each clip, seconds (FMA's clips are 30 s)
source_rate = 44100  # Hz of the generated mp3s
sample_rate = 16000  # Hz of the codes
workers = [1, 2]  # pool sizes to compare
long_minutes = [10, 60]  # lengths of the long files whose peak RSS is measured, minutes
whole_minutes = [10]  # of those, the ones also measured decoded whole (the old path), for comparison
rss_only = False  # measure only the long-file memory figures

# -----------------------------------------------------------------------------


def cpu_seconds():
    """CPU time of this process and its finished children (ffmpeg, pool workers), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


GROWTH_GOAL_BYTES_PER_SAMPLE = 1.0  # issue 12: memory grows with a file's length by its codes only
RSS_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from local.audio import decoding, ffmpeg as audio_ffmpeg
from local.dataset import build
if sys.argv[4] == "whole":
    decoding.STREAM_ABOVE_BYTES = 1 << 62
    decoding.WHOLE_DECODE_MAX_SECONDS = float("inf")  # (issue 20: a long file streams whatever its size)
    audio_ffmpeg.WHOLE_DECODE_MAX_BYTES = 1 << 62
summary = build.preprocess(sys.argv[2], sys.argv[3], sample_rate=8000, workers=1, progress=False)
assert summary["processed"] >= 1 and not summary["failed"], summary["failed"]
# VmHWM, not ru_maxrss: a child's ru_maxrss keeps its parent's peak across fork and exec (the full bench's
# parent had ~500 MB, and every figure read 496.6 MB)
peak_kb = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(peak_kb / 1024, summary["dataset"]["n_samples"])
"""


def long_file_rss(work_dir, long_minutes, whole_minutes):
    """{figure: value} of the peak RSS (MB) of stage 2, in a fresh process, on one long file (22,050 Hz mono
    WAV of a tone and noise) per length in ``long_minutes``; those in ``whole_minutes`` also decoded whole
    (the path before streaming), for comparison; the longest also twice in one run. With the RSS growth per
    sample between the shortest and the longest."""
    import wave

    import numpy as np
    figures, samples, peaks = {}, {}, {}
    rng = np.random.default_rng(0)
    for minutes in long_minutes:
        raw_long = os.path.join(work_dir, f"long{minutes}", "Mix")
        os.makedirs(raw_long)
        rate = 22050
        with wave.open(os.path.join(raw_long, "mix.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            for _ in range(int(minutes)):  # a minute at a time: the bench itself stays small
                t = np.arange(60 * rate) / rate
                y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(len(t))
                w.writeframes((y * 32767).astype("<i2").tobytes())
        modes = ["stream"] + ["whole"] * (minutes in whole_minutes) + ["twice"] * (minutes == max(long_minutes))
        for mode in modes:
            if mode == "twice":
                shutil.copy(os.path.join(raw_long, "mix.wav"), os.path.join(raw_long, "mix2.wav"))
            out_dir = os.path.join(work_dir, f"out-long{minutes}-{mode}")
            done = subprocess.run([sys.executable, "-c", RSS_CHILD, os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))), os.path.dirname(raw_long), out_dir, mode],
                capture_output=True, text=True, check=True)
            rss_mb, n_samples = done.stdout.split()
            suffix = {"stream": "", "whole": "_whole", "twice": "_twice"}[mode]
            figures[f"peak_rss_mb_{minutes}_min{suffix}"] = round(float(rss_mb), 1)
            if mode == "stream":
                figures[f"codes_mb_{minutes}_min"] = round(int(n_samples) / 1e6, 1)
                samples[minutes], peaks[minutes] = int(n_samples), float(rss_mb) * (1 << 20)
            shutil.rmtree(out_dir)
        shutil.rmtree(os.path.dirname(raw_long))
    shortest, longest = min(long_minutes), max(long_minutes)
    if longest > shortest:
        figures["growth_bytes_per_sample"] = round(
            (peaks[longest] - peaks[shortest]) / (samples[longest] - samples[shortest]), 2)
        figures["growth_goal_bytes_per_sample"] = GROWTH_GOAL_BYTES_PER_SAMPLE
    return figures


def resampler_timings(clip, sample_rate, repeats=3):
    """Seconds per clip (best of ``repeats``) of each way to get ``sample_rate`` Hz mono: ffmpeg decoding at
    the file's rate, then soxr HQ in numpy (what stage 2 does), vs ffmpeg decoding and resampling itself."""
    from local.audio import ffmpeg as audio_ffmpeg
    from local.audio import waveform
    data = open(clip, "rb").read()
    timings = {"decode": [], "soxr_numpy": [], "ffmpeg_soxr": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        samples, rate, _ = audio_ffmpeg.decode_audio(data)
        t1 = time.perf_counter()
        waveform.resample(waveform.to_mono(samples), rate, sample_rate)
        t2 = time.perf_counter()
        subprocess.run([audio_ffmpeg.ffmpeg_binary(), "-v", "error", "-i", "pipe:0", "-ac", "1", "-af",
                        f"aresample={sample_rate}:resampler=soxr:precision=20", "-f", "f32le", "pipe:1"],
                       input=data, capture_output=True, check=True)
        t3 = time.perf_counter()
        for key, value in zip(timings, (t1 - t0, t2 - t1, t3 - t2)):
            timings[key].append(value)
    return {key: min(values) for key, values in timings.items()}


def main(argv=None):
    config = configure(dict(globals()), argv)
    from bench.clips import write_fma_like_clips
    from local.collect import demo_corpus
    from local.dataset import build
    tracks, sample_rate, workers = config["tracks"], config["sample_rate"], config["workers"]
    work = tempfile.mkdtemp(prefix="bench-preprocessing-")
    if config["rss_only"]:
        print(json.dumps({"source": "22050 Hz mono 16-bit WAV -> 8000 Hz codes, 1 worker",
                          **long_file_rss(work, config["long_minutes"], config["whole_minutes"])}))
        shutil.rmtree(work)
        return
    raw = os.path.join(work, "raw")
    audio_seconds = write_fma_like_clips(raw, tracks, config["seconds"], config["source_rate"])
    # warm up once (imports, numba's first compile) so that no pool size pays for it in its timing
    build.preprocess(os.path.join(raw, demo_corpus.DEMO_GENRES[0]), os.path.join(work, "warmup"),
                             sample_rate=sample_rate, workers=1, progress=False)
    results, cores_busy = {}, {}
    for n in workers:
        start, start_cpu = time.perf_counter(), cpu_seconds()
        summary = build.preprocess(raw, os.path.join(work, f"out{n}"), sample_rate=sample_rate, workers=n,
                                           progress=False)
        elapsed = time.perf_counter() - start
        assert summary["processed"] == tracks, summary["failed"]
        results[n] = audio_seconds / elapsed
        cores_busy[n] = (cpu_seconds() - start_cpu) / elapsed
    timings = resampler_timings(os.path.join(raw, demo_corpus.DEMO_GENRES[0], "clip000.mp3"), sample_rate)
    rss_figures = long_file_rss(work, config["long_minutes"], config["whole_minutes"])
    shutil.rmtree(work)

    print(json.dumps({
        **rss_figures,
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
