"""Training examples for the WaveNet, streamed from the Parquet dataset without loading it whole.

One example = ``receptive_field + window`` consecutive codes of one track (its "span"): the model reads the
first ``receptive_field + window - 1`` of them and, at each of its last ``window`` output positions (the
positions that see a full receptive field), predicts the next code::

    codes   c[s] c[s+1] ...  c[s+R-1]  c[s+R] ... c[s+R+W-2]  c[s+R+W-1]
    inputs  |<------------------ R + W - 1 codes ------------------>|
    targets                            c[s+R] ... c[s+R+W-1]           (W codes, = input shifted by one)

An epoch visits every train track once, in a fresh random order: each track gives
``(n_samples - R) // W`` examples whose targets tile the track from a random phase, so tracks count in
proportion to their length and every sample is a target about once per epoch. Tracks are read one row
group at a time, ``cache_tracks`` at once; the examples of those tracks are shuffled together, so peak
memory is bounded by ``cache_tracks`` tracks, not by the dataset. The whole stream is a pure function of
(seed, number of examples already consumed), which is what makes a resumed run continue exactly.

The validation set is a fixed list of windows from the valid split, the same for every run with the same
dataset, window and receptive field.

A renderer's windows (a :class:`WindowPlan`) also carry the plan: each start moves back (at most one frame) so
that the first sample its outputs predict begins a plan frame, and the window gets its frames, computed on the
fly from the track's codes (local/audio/plan.py: 4 ms per 4 s of audio, once per cached track).
"""
import dataclasses
import sys

import numpy as np

from local.audio.plan import PlanSettings, plan_frames, plan_window
from local.dataset.code_statistics import code_histogram, entropy_bits
from local.store import dataset_files

# --- the pure core (also called by the Spark trainer inside mapPartitions) ------------------------------

def windows_from_codes(codes, receptive_field, window, starts):
    """Cut training examples out of one track's codes.

    codes           (n_samples,) uint8 (or any int) mu-law codes of one track
    receptive_field R, in samples (:func:`local.model.wavenet.receptive_field`)
    window          W, output samples per example
    starts          (n,) int offsets s into ``codes``, each 0 <= s <= n_samples - (R + W)

    Returns ``(inputs, targets)``:
      inputs  (n, R + W - 1) int32: ``codes[s : s + R + W - 1]``
      targets (n, W)         int32: ``codes[s + R : s + R + W]``, the next code at each of the last W input positions
    so ``targets[:, j] == inputs[:, R + j]`` for j < W - 1. Raises ValueError for a start out of range.
    """
    codes = np.asarray(codes)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    span = receptive_field + window
    if starts.size and (starts.min() < 0 or starts.max() > len(codes) - span):
        raise ValueError(f"window starts must lie in 0..{len(codes) - span} for a track of {len(codes)} samples "
                         f"and receptive_field + window = {span}; got {starts.min()}..{starts.max()}")
    index = starts[:, None] + np.arange(span)[None, :]
    cut = codes[index].astype(np.int32)
    return cut[:, :-1], cut[:, receptive_field:]


def examples_per_track(n_samples, receptive_field, window):
    """How many examples a track of ``n_samples`` gives per epoch: (n_samples - R) // W (0 if too short)."""
    return max(0, (int(n_samples) - receptive_field) // window)


def track_starts(n_samples, receptive_field, window, rng):
    """Window starts whose targets tile one track from a random phase: (examples_per_track,) int64.

    Example j starts at ``phase + j * window``, so its targets are samples
    ``phase + R + j*W .. phase + R + (j+1)*W - 1`` and together they cover the track once.
    """
    count = examples_per_track(n_samples, receptive_field, window)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    slack = int(n_samples) - receptive_field - count * window
    phase = int(rng.integers(0, slack + 1))
    return phase + window * np.arange(count, dtype=np.int64)


def valid_starts(n_samples, receptive_field, window, count):
    """``count`` evenly spaced, fixed window starts in one track (fewer if the track is short): (k,) int64."""
    last = int(n_samples) - receptive_field - window
    if last < 0 or count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, last, num=count).round().astype(np.int64))


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """How a renderer's window reads its plan (local.model.wavenet's ``plan`` input).

    settings      the run's :class:`local.audio.plan.PlanSettings`
    width         plan frames read on each side (``plan_width``)
    context_past  codes at a window's start only the context stack reads (0 without one)
    """
    settings: PlanSettings
    width: int
    context_past: int = 0

    def align(self, starts, last_start):
        """``starts`` (n,) moved back so that the first predicted sample (start + context_past + 1) begins a frame,
        or one frame on when that would be negative; none past ``last_start`` (then moved back further)."""
        hop = self.settings.hop
        starts = np.asarray(starts, np.int64)
        aligned = starts - (starts + self.context_past + 1) % hop
        aligned = np.where(aligned < 0, aligned + hop, aligned)
        while np.any(aligned > last_start):
            aligned = np.where(aligned > last_start, aligned - hop, aligned)
        return aligned

    def frames(self, track_plan, starts, n_inputs):
        """The plan inputs (n, ceil(outputs / hop) + 2 * width, bands) float32 of windows of ``n_inputs`` codes at
        aligned ``starts`` in a track whose plan is ``track_plan`` (:func:`local.audio.plan.plan_frames`)."""
        hop, outputs = self.settings.hop, n_inputs - self.context_past
        n_frames = -(-outputs // hop)
        return np.stack([plan_window(track_plan, (int(s) + self.context_past + 1) // hop, n_frames, self.width)
                         for s in np.asarray(starts).reshape(-1)]) if len(np.asarray(starts).reshape(-1)) else \
            np.zeros((0, n_frames + 2 * self.width, self.settings.bands), np.float32)


def plan_windows_from_codes(codes, receptive_field, window, starts, window_plan, code_transform=None):
    """:func:`windows_from_codes` for a renderer: (inputs, targets, plans), the starts aligned first
    (:meth:`WindowPlan.align`); ``plans`` as :meth:`WindowPlan.frames`, of ``codes``, the windows cut from
    ``code_transform(codes)`` when given. Without a plan (None): plans is None."""
    model_codes = codes if code_transform is None else code_transform(codes)
    if window_plan is None:
        return (*windows_from_codes(model_codes, receptive_field, window, starts), None)
    starts = window_plan.align(starts, len(codes) - receptive_field - window)
    inputs, targets = windows_from_codes(model_codes, receptive_field, window, starts)
    return inputs, targets, window_plan.frames(plan_frames(codes, window_plan.settings), starts, inputs.shape[1])


# --- the dataset on disk -------------------------------------------------------------------------------

def silence_first(codes, n_silence, silence_code):
    """``codes`` (n,) with ``n_silence`` codes ``silence_code`` in front: (n_silence + n,), the same dtype."""
    codes = np.asarray(codes)
    if n_silence <= 0:
        return codes
    return np.concatenate([np.full(int(n_silence), silence_code, dtype=codes.dtype), codes])


def lead_in(tracks, read_codes, n_silence, silence_code):
    """Tracks that start with ``n_silence`` codes of silence: (rows with ``n_samples`` grown by it, a reader that
    puts them in front of ``read_codes(row)``; :func:`silence_first`). Cut from these, a window may start at a
    track's first sample with only silence before it, as generation starts; unchanged when ``n_silence`` is 0."""
    if n_silence <= 0:
        return tracks, read_codes

    def read_led_in(row):
        return silence_first(read_codes(dict(row, n_samples=int(row["n_samples"]) - n_silence)), n_silence,
                             silence_code)

    return [dict(row, n_samples=int(row["n_samples"]) + n_silence) for row in tracks], read_led_in


def split_tracks(index, split):
    """The index rows (see :func:`local.store.dataset_files.read_index`) of one split, sorted by track_id."""
    return sorted((row for row in index if row["split"] == split), key=lambda row: str(row["track_id"]))


def usable_tracks(rows, receptive_field, window):
    """(usable, too_short): the rows long enough for at least one example, and the others."""
    usable = [r for r in rows if examples_per_track(r["n_samples"], receptive_field, window) > 0]
    return usable, [r for r in rows if examples_per_track(r["n_samples"], receptive_field, window) == 0]


class TrainStream:
    """An endless, resumable stream of training batches from the train tracks (see the module docstring).

    tracks        index rows of the train split (with ``n_samples``, ``genre_id``; see dataset_files.read_index)
    cache_tracks  how many tracks are held in memory and shuffled together (bounds peak memory)
    read_codes    ``read_codes(row) -> (n_samples,) uint8`` (default :func:`local.store.dataset_files.read_track_codes`)
    window_plan   a renderer's :class:`WindowPlan` (batches then carry ``plan``), or None
    code_transform  ``f(codes) -> codes`` the model reads instead of a track's (a renderer's pre-emphasis), applied
                  after its plan is computed from the track's own codes; None = the codes as they are
    code_noise    std (in codes) of Gaussian jitter added to the input codes, rounded and clipped to
                  0..quantization_channels-1 (targets stay clean): the net cannot trust its past exactly, as when
                  it hears its own samples, and leans on the plan; 0 = none
    The stream after ``examples_done`` consumed examples is a pure function of (tracks, seed, examples_done).
    """

    def __init__(self, tracks, receptive_field, window, batch_size, *, seed=0, cache_tracks=8,
                 read_codes=dataset_files.read_track_codes, window_plan=None, code_noise=0.0,
                 quantization_channels=256, code_transform=None):
        self.code_transform = code_transform
        self.window_plan, self.code_noise, self.quantization_channels = window_plan, float(code_noise), \
            int(quantization_channels)
        self.tracks = [t for t in tracks if examples_per_track(t["n_samples"], receptive_field, window) > 0]
        if not self.tracks:
            raise ValueError(f"no train track is longer than receptive_field + window = {receptive_field + window} "
                             f"samples")
        self.receptive_field, self.window, self.batch_size = receptive_field, window, batch_size
        self.seed, self.cache_tracks, self.read_codes = seed, max(1, int(cache_tracks)), read_codes
        self.epoch_examples = sum(examples_per_track(t["n_samples"], receptive_field, window) for t in self.tracks)
        self.broken = set()  # positions of tracks that could not be read

    def epoch_groups(self, epoch):
        """This epoch's track order cut into cache groups: a list of arrays of track positions.

        Costs O(number of tracks) only; the examples of a group are drawn when the stream reaches it.
        """
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.tracks))
        return [order[first:first + self.cache_tracks] for first in range(0, len(order), self.cache_tracks)]

    def group_examples(self, epoch, group_number, members):
        """The shuffled examples of one cache group: (track positions (k,) int64, starts (k,) int64)."""
        rng = np.random.default_rng([self.seed, epoch, group_number + 1])
        positions, starts = [], []
        for t in members:
            s = track_starts(self.tracks[t]["n_samples"], self.receptive_field, self.window, rng)
            positions.append(np.full(len(s), t, dtype=np.int64))
            starts.append(s)
        positions, starts = np.concatenate(positions), np.concatenate(starts)
        shuffle = rng.permutation(len(starts))
        return positions[shuffle], starts[shuffle]

    def examples(self, examples_done=0):
        """Yield (track position, start) forever, skipping the first ``examples_done`` of the stream."""
        epoch, skip = divmod(int(examples_done), self.epoch_examples)
        while True:
            for number, members in enumerate(self.epoch_groups(epoch)):
                size = sum(examples_per_track(self.tracks[t]["n_samples"], self.receptive_field, self.window)
                           for t in members)
                if skip >= size:  # a resumed stream skips whole groups without drawing them
                    skip -= size
                    continue
                positions, starts = self.group_examples(epoch, number, members)
                yield from zip(positions[skip:].tolist(), starts[skip:].tolist())
                skip = 0
            epoch += 1

    def read_track(self, position):
        """The codes of track ``position``, or None (reported once on stderr) if its row cannot be read or is
        shorter than the index says; such a track is skipped from then on."""
        row = self.tracks[position]
        try:
            codes = self.read_codes(row)
            if len(codes) < int(row["n_samples"]):
                raise ValueError(f"{len(codes)} codes, the index says {row['n_samples']}")
            return codes
        except (OSError, ValueError, KeyError, IndexError) as e:  # pyarrow's errors derive from these
            self.broken.add(position)
            print(f"warning: skipping track {row.get('track_id')} in {row.get('part')}: {e}", file=sys.stderr)
            return None

    def batches(self, examples_done=0):
        """Yield batches forever: dict ``codes`` (B, R+W-1) int32, ``genre_id`` (B,) int32 [, ``plan`` (B, F, bands)
        float32 with a :class:`WindowPlan`]; targets (B, W) int32.

        Holds the codes (and plans) of at most ``cache_tracks`` tracks (plus the batch being built) at once.
        """
        cache = {}  # track position -> codes; tracks leave it as soon as the order moves past their group
        plans = {}  # track position -> its plan frames (a renderer's)
        inputs, targets, genres, frames = [], [], [], []
        batch_number = int(examples_done) // self.batch_size  # the jitter of a batch: from the seed and its number
        for position, start in self.examples(examples_done):
            if position in self.broken:
                if len(self.broken) == len(self.tracks):
                    raise ValueError("no train track could be read (see the warnings above)")
                continue
            if position not in cache:
                if len(cache) >= self.cache_tracks:
                    evicted = next(iter(cache))
                    cache.pop(evicted)
                    plans.pop(evicted, None)
                codes = self.read_track(position)
                if codes is None:
                    continue
                if self.window_plan is not None:
                    plans[position] = plan_frames(codes, self.window_plan.settings)
                cache[position] = codes if self.code_transform is None else self.code_transform(codes)
            x, y, plan = self.cut(cache[position], plans.get(position), start)
            inputs.append(x[0])
            targets.append(y[0])
            genres.append(int(self.tracks[position].get("genre_id") or 0))
            if plan is not None:
                frames.append(plan[0])
            if len(inputs) == self.batch_size:
                features = {"codes": self.jittered(np.stack(inputs), batch_number),
                            "genre_id": np.asarray(genres, dtype=np.int32)}
                batch_number += 1
                if frames:
                    features["plan"] = np.stack(frames)
                yield features, np.stack(targets)
                inputs, targets, genres, frames = [], [], [], []

    def jittered(self, codes, batch_number):
        """``codes`` (B, T) int32 with the stream's ``code_noise`` (unchanged when 0)."""
        if self.code_noise <= 0:
            return codes
        rng = np.random.default_rng([self.seed, 4, batch_number])
        noisy = np.rint(codes + rng.normal(0.0, self.code_noise, codes.shape))
        return np.clip(noisy, 0, self.quantization_channels - 1).astype(np.int32)

    def cut(self, codes, track_plan, start):
        """(inputs (1, R+W-1), targets (1, W), plan (1, F, bands) or None) of the window at ``start``."""
        if self.window_plan is None:
            return (*windows_from_codes(codes, self.receptive_field, self.window, [start]), None)
        start = self.window_plan.align([start], len(codes) - self.receptive_field - self.window)
        x, y = windows_from_codes(codes, self.receptive_field, self.window, start)
        return x, y, self.window_plan.frames(track_plan, start, x.shape[1])


class GenreBalancedStream(TrainStream):
    """A :class:`TrainStream` that draws every genre equally often, whatever its number or length of tracks.

    The stream is a sequence of track visits: the visits take the genres in turns (each round of
    ``n_genres`` visits has every genre once, in a fresh random order) and a genre's tracks in a fresh random
    order each time through them; a visit draws ``windows_per_visit`` windows at random starts of its track.
    ``cache_tracks`` visits make a group whose windows are shuffled together (memory: at most ``cache_tracks``
    tracks). So every genre gives ``windows_per_visit`` windows per round: the genres' window counts differ
    by at most one visit's windows, however unbalanced the tracks. Still a pure function of
    (tracks, seed, examples_done): each group is drawn from its own number, so a resumed stream skips the
    groups before it without drawing them.
    """

    def __init__(self, tracks, receptive_field, window, batch_size, *, seed=0, cache_tracks=8, windows_per_visit=16,
                 read_codes=dataset_files.read_track_codes, window_plan=None):
        super().__init__(tracks, receptive_field, window, batch_size, seed=seed, cache_tracks=cache_tracks,
                         read_codes=read_codes, window_plan=window_plan)
        self.windows_per_visit = max(1, int(windows_per_visit))
        by_genre = {}
        for position, track in enumerate(self.tracks):
            by_genre.setdefault(int(track.get("genre_id") or 0), []).append(position)
        self.genre_tracks = [np.asarray(positions, np.int64) for _, positions in sorted(by_genre.items())]

    def visit(self, number):
        """The track position of visit ``number`` (0, 1, ...): genres in turns, a genre's tracks in turns."""
        n_genres = len(self.genre_tracks)
        turn, slot = divmod(int(number), n_genres)
        genre = int(np.random.default_rng([self.seed, 1, turn]).permutation(n_genres)[slot])
        members = self.genre_tracks[genre]
        passes, k = divmod(turn, len(members))
        return int(members[np.random.default_rng([self.seed, 2, genre, passes]).permutation(len(members))[k]])

    def balanced_group(self, group_number):
        """The shuffled examples of group ``group_number``: (track positions (k,) int64, starts (k,) int64)."""
        rng = np.random.default_rng([self.seed, 3, group_number])
        visits = [self.visit(group_number * self.cache_tracks + j) for j in range(self.cache_tracks)]
        positions = np.repeat(np.asarray(visits, np.int64), self.windows_per_visit)
        last = np.asarray([int(self.tracks[t]["n_samples"]) - self.receptive_field - self.window for t in positions])
        starts = rng.integers(0, last + 1)
        shuffle = rng.permutation(len(starts))
        return positions[shuffle], starts[shuffle].astype(np.int64)

    def examples(self, examples_done=0):
        """Yield (track position, start) forever, skipping the first ``examples_done`` of the stream."""
        group, skip = divmod(int(examples_done), self.cache_tracks * self.windows_per_visit)
        while True:
            positions, starts = self.balanced_group(group)
            yield from zip(positions[skip:].tolist(), starts[skip:].tolist())
            skip, group = 0, group + 1


def to_tf_dataset(stream, examples_done=0, prefetch=4):
    """A ``tf.data.Dataset`` of the stream's batches (from a generator thread), prefetched ``prefetch`` deep.

    Each element: ({"codes": (B, R+W-1) int32, "genre_id": (B,) int32 [, "plan": (B, F, bands) float32]},
    targets (B, W) int32).
    """
    import tensorflow as tf
    length = stream.receptive_field + stream.window - 1
    features = {"codes": tf.TensorSpec((stream.batch_size, length), tf.int32),
                "genre_id": tf.TensorSpec((stream.batch_size,), tf.int32)}
    plan = stream.window_plan
    if plan is not None:
        n_frames = -(-(length - plan.context_past) // plan.settings.hop) + 2 * plan.width
        features["plan"] = tf.TensorSpec((stream.batch_size, n_frames, plan.settings.bands), tf.float32)
    signature = (features, tf.TensorSpec((stream.batch_size, stream.window), tf.int32))
    dataset = tf.data.Dataset.from_generator(lambda: stream.batches(examples_done), output_signature=signature)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(prefetch)


def valid_window_counts(tracks, receptive_field, window, n_windows):
    """How many of ``n_windows`` validation windows each of ``tracks`` gets, as a list in their order: a share
    proportional to its length, at least one; 0 for a track too short for a window."""
    usable = [examples_per_track(t["n_samples"], receptive_field, window) > 0 for t in tracks]
    total = sum(int(t["n_samples"]) for t, ok in zip(tracks, usable) if ok)
    return [max(1, int(round(n_windows * int(t["n_samples"]) / total))) if ok else 0
            for t, ok in zip(tracks, usable)]


def validation_windows(codes, genre_id, receptive_field, window, count, window_plan=None, code_transform=None):
    """The fixed validation windows of one track: ``count`` evenly spaced ones (see :func:`valid_starts`).

    codes (n_samples,) uint8. Returns ({"codes": (k, R+W-1) int32, "genre_id": (k,) int32 [, "plan"]}, targets
    (k, W) int32), k <= count (k = 0 for a track too short); a renderer's starts aligned to its plan frames
    (:func:`plan_windows_from_codes`). Also called by the Spark trainer inside mapPartitions.
    """
    starts = valid_starts(len(codes), receptive_field, window, count)
    x, y, plan = plan_windows_from_codes(codes, receptive_field, window, starts, window_plan, code_transform)
    features = {"codes": x, "genre_id": np.full(len(x), int(genre_id or 0), dtype=np.int32)}
    if plan is not None:
        features["plan"] = plan
    return features, y


def concatenate_windows(parts):
    """One (features, targets) set from a list of them (as :func:`validation_windows` returns)."""
    return ({key: np.concatenate([p[0][key] for p in parts]) for key in parts[0][0]},
            np.concatenate([p[1] for p in parts]))


def validation_set(tracks, receptive_field, window, n_windows, read_codes=dataset_files.read_track_codes,
                   window_plan=None, code_transform=None):
    """A fixed validation set: about ``n_windows`` windows spread evenly over the valid tracks.

    Each track gets a share proportional to its length (at least one window; :func:`valid_window_counts`);
    its windows are evenly spaced (:func:`validation_windows`), so the set is the same every time. Returns
    ({"codes": (n, R+W-1) int32, "genre_id": (n,) int32}, targets (n, W) int32), or None when no valid
    track is long enough.
    """
    counts = valid_window_counts(tracks, receptive_field, window, n_windows)
    if not any(counts) or n_windows <= 0:
        return None
    return concatenate_windows([validation_windows(read_codes(row), row.get("genre_id"), receptive_field, window,
                                                   count, window_plan, code_transform)
                                for row, count in zip(tracks, counts) if count])


def unigram_bits(tracks, quantization_channels, read_codes=dataset_files.read_track_codes, max_tracks=64):
    """Entropy in bits/sample of the codes histogram of (up to ``max_tracks`` of) ``tracks``: the baseline a
    model that ignores context reaches. An estimate from a sample of tracks, so that a run on a large dataset
    starts at once; ``run_model_predictions.py --evaluate=true`` reports it over every train track."""
    counts = code_histogram((read_codes(row) for row in tracks[:max_tracks]), quantization_channels)
    return entropy_bits(counts) if counts.sum() else float(np.log2(quantization_channels))
