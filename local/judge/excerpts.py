"""Real excerpts to judge clips against: held-out dataset tracks, spread over genres and tracks.
"""
import os

import numpy as np

from local.audio import ffmpeg
from local.audio import waveform as audio_waveform
from local.store import dataset_files

MAX_REFERENCE_EXCERPTS = 64  # real excerpts the clips are compared with (bounds the judge's time)


# --- judging generated clips ---------------------------------------------------------------------------

def spread_rows(rows, limit):
    """At most ``limit`` of ``rows``, the genres taking turns (each genre's rows in track_id order), so a
    large test split is sampled evenly across genres without reading it all."""
    by_genre = {}
    for row in sorted(rows, key=lambda r: str(r["track_id"])):
        by_genre.setdefault(row["genre"], []).append(row)
    longest = max((len(v) for v in by_genre.values()), default=0)
    turns = [v[j] for j in range(longest) for _, v in sorted(by_genre.items()) if j < len(v)]
    return turns[:limit]


def real_excerpts(rows, n_samples, offset=0):
    """Non-overlapping excerpts of ``n_samples`` codes from ``rows`` (starting ``offset`` into each track):
    a dict genre -> list of (n_samples,) code arrays, the tracks of a genre taking turns (so a genre's first
    excerpts come from different tracks)."""
    per_track = {}
    for row in rows:
        codes = dataset_files.read_track_codes(row)
        starts = range(int(offset), len(codes) - n_samples + 1, n_samples)
        per_track.setdefault(row["genre"], []).append([codes[s:s + n_samples].copy() for s in starts])
    out = {}
    for genre, tracks in per_track.items():
        longest = max((len(t) for t in tracks), default=0)
        out[genre] = [t[j] for j in range(longest) for t in tracks if j < len(t)]
    return out


def clip_codes(clip, sample_rate, quantization_channels):
    """One clip as the tagger's codes (n,) int: a WAV (or any audio) path is decoded, downmixed and resampled to
    ``sample_rate`` (not trimmed nor normalized: the clip as it sounds); a float array is a waveform in [-1, 1]
    at ``sample_rate``; an integer array is already codes."""
    if isinstance(clip, (str, os.PathLike)):
        samples, rate, _ = ffmpeg.decode_audio(os.fspath(clip))
        clip = audio_waveform.resample(audio_waveform.to_mono(samples), rate, sample_rate)
    clip = np.asarray(clip)
    if np.issubdtype(clip.dtype, np.integer):
        return clip.astype(np.int64)
    return audio_waveform.mu_law_encode(np.clip(clip.astype(np.float32), -1, 1), quantization_channels).astype(np.int64)


def clips_as_codes(clips, sample_rate, quantization_channels):
    """(codes, n_samples): every clip as :func:`clip_codes`, cut to the shortest (so all are judged on as many
    samples as the real excerpts they are compared with)."""
    codes = [clip_codes(c, sample_rate, quantization_channels) for c in clips]
    n_samples = min(len(c) for c in codes)
    return [c[:n_samples] for c in codes], n_samples


def pick_excerpts(data_dir, n_samples, asked_genres):
    """The real excerpts of ``n_samples`` codes that clips asked for ``asked_genres`` are compared with: a dict
    ``reference`` and ``floor`` (lists of (n_samples,) code arrays), ``reference_genres`` and ``floor_genres``
    (their genres) and ``splits`` (the splits read). The excerpts come from the test tracks (and the valid tracks
    when the test tracks give fewer than two per clip): one per clip, of its asked genre where there is one,
    makes the floor set; the rest (up to MAX_REFERENCE_EXCERPTS, evenly spread) the reference set. When even
    both splits give fewer than two per clip, every excerpt is in the reference set and the floor is empty."""
    index = dataset_files.read_index(data_dir)
    excerpts, splits = {}, []
    for split in ("test", "valid"):
        if sum(len(v) for v in excerpts.values()) >= 2 * len(asked_genres):
            break
        rows = spread_rows([r for r in index if r["split"] == split], MAX_REFERENCE_EXCERPTS + len(asked_genres))
        for genre, found in real_excerpts(rows, n_samples).items():
            excerpts.setdefault(genre, []).extend(found)
        splits.append(split)
    floor_set, floor_genres = [], []
    # too few excerpts for both sets (many long clips): all of them are the reference, there is no floor
    enough = sum(len(v) for v in excerpts.values()) >= 2 * len(asked_genres)
    for genre in (asked_genres if enough else []):
        pool_genre = genre if excerpts.get(genre) else max(excerpts, key=lambda g: len(excerpts[g]), default=None)
        if pool_genre is not None and excerpts[pool_genre]:
            floor_set.append(excerpts[pool_genre].pop(0))
            floor_genres.append(pool_genre)
    rest = [(e, genre) for genre in sorted(excerpts) for e in excerpts[genre]]
    picks = np.unique(np.linspace(0, len(rest) - 1, num=min(len(rest), MAX_REFERENCE_EXCERPTS)).round()) \
        if rest else []
    return {"reference": [rest[int(i)][0] for i in picks], "reference_genres": [rest[int(i)][1] for i in picks],
            "floor": floor_set, "floor_genres": floor_genres, "splits": splits}
