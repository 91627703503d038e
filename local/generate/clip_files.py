"""Generated clips on disk: the one clip writer of stage 4 (``<out_dir>/<Genre>_<nn>.wav``) and of the clips
sampled while training (``<run_dir>/samples/step-N/<Genre>_<genre id>.wav``): a 16-bit PCM WAV, its spectrogram PNG,
and a warning when the codes are constant or silent (local.audio.waveform.clip_problem)."""
import os
import re
import unicodedata

import numpy as np

from local.audio.encoding import write_wav
from local.audio.waveform import clip_problem, mu_law_decode
from local.core.fileio import atomic_write
from local.core.plots import plot_spectrogram


def clip_name(genre, number):
    """The file name stem of a generated clip, for training samples and stage 4 alike: ``<genre>_<nn>``.

    ``number``: the genre id (training samples: one clip per genre) or the stream (stage 4), so no two clips of
    one call share a file even when their genres read alike ("Hip Hop", "Hip-Hop"). The genre part keeps the
    letters and digits of any script ("Поп_03", "ロック_04"), "-" for anything else, at most 40 characters;
    "clip" when nothing is left (an unconditioned model's "").
    """
    text = unicodedata.normalize("NFC", genre or "")
    slug = re.sub(r"[^\w-]+|_+", "-", text).strip("-")[:40].strip("-") or "clip"
    return f"{slug}_{int(number):02d}"


def write_clip(folder, name, codes, *, sample_rate, quantization_channels, title, prime=(), small=False, plan=None,
               plan_rate=None):
    """Write ``<folder>/<name>.wav`` (``prime`` codes first, then ``codes``; 16-bit PCM at ``sample_rate`` Hz)
    and ``<name>.png`` (its spectrogram, titled ``title``; ``small``: the run page's thumbnail size); with a
    ``plan`` (F, bands) log-mel dB at ``plan_rate`` frames/s (what a renderer played) also
    ``<name>.plan.npy``, drawn above the spectrogram.

    codes (n,) generated mu-law codes; prime (p,) codes or empty. Returns {"wav", "png" [, "plan"]: paths,
    "problem": a warning about the generated codes or ""}.
    """
    y = mu_law_decode(np.concatenate([prime, codes]) if len(prime) else codes, quantization_channels)
    wav = write_wav(os.path.join(folder, f"{name}.wav"), y, sample_rate)
    figure = {"figsize": (4, 2.2), "colorbar": False} if small else {}
    written = {"wav": wav}
    if plan is not None:
        written["plan"] = write_plan(os.path.join(folder, f"{name}.plan.npy"), plan)
        figure.update(plan=plan, plan_rate=plan_rate)
    png = plot_spectrogram(y, sample_rate, os.path.join(folder, f"{name}.png"), title=title, **figure)
    return {**written, "png": png, "problem": clip_problem(codes, quantization_channels)}


def write_plan(path, plan):
    """Save ``plan`` (F, bands) float32 as an .npy file, atomically (a killed call leaves no half plan)."""
    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(plan, np.float32), allow_pickle=False)
    return path


def write_clips(out_dir, codes, prime, *, genres, genre_ids, sample_rate, quantization_channels, title, plans=None,
                plan_rate=None):
    """Stage 4: write each stream's clip as ``<out_dir>/<Genre>_<nn>.wav`` (the prime first when ``prime`` has
    codes) and its spectrogram ``.png`` (with ``plans``: (streams, F, bands), each clip's ``.plan.npy`` drawn
    above it); returns one dict per clip (name, wav, png [, plan], genre, genre_id, stream, problem).

    codes (streams, n) generated codes; prime (p,) codes or empty; ``title`` is the spectrograms' subtitle.
    """
    clips = []
    for k, (clip_genre, genre_id) in enumerate(zip(genres, genre_ids)):
        name = clip_name(clip_genre, k)
        written = write_clip(out_dir, name, codes[k], prime=prime, sample_rate=sample_rate,
                             quantization_channels=quantization_channels,
                             title=f"{name}: {clip_genre or 'generated'}, {title}",
                             plan=None if plans is None else plans[k], plan_rate=plan_rate)
        clips.append({"name": name, **written, "genre": clip_genre, "genre_id": genre_id, "stream": k})
    return clips
