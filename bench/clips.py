"""FMA-like clips for the stage-2 benchmarks: demo-corpus music as 44.1 kHz stereo mp3, one folder per genre."""
import os
import subprocess

import numpy as np

from local.audio import ffmpeg
from local.collect import demo_corpus


def write_fma_like_clips(raw_dir, tracks, seconds=30.0, source_rate=44100):
    """Write ``tracks`` clips of ``seconds`` to ``raw_dir/<Genre>/clip<i>.mp3`` (stereo, ``source_rate`` Hz, 192
    kbit/s); return the seconds of audio written. The channels differ a little, so downmixing is real work."""
    for i in range(tracks):
        genre = demo_corpus.DEMO_GENRES[i % 3]
        mono = demo_corpus.synthesize_track(genre, i, seed=1, seconds=seconds, sample_rate=source_rate)
        stereo = np.stack([mono, np.roll(mono, 37) * 0.9], axis=1)
        os.makedirs(os.path.join(raw_dir, genre), exist_ok=True)
        subprocess.run([ffmpeg.ffmpeg_binary(), "-v", "error", "-y", "-f", "f32le", "-ar", str(source_rate), "-ac", "2",
                        "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", "192k",
                        os.path.join(raw_dir, genre, f"clip{i:03d}.mp3")],
                       input=stereo.astype("<f4").tobytes(), check=True)
    return tracks * seconds
