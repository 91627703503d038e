"""Use a trained genre tagger (local/tagger.py): tag audio files, find similar tracks, judge generated clips.

- Tagging: every audio file of a file or folder is decoded exactly as stage 2 decodes it
  (:func:`local.decoding.decode_track` with the settings the tagger's dataset was made with), and gets
  the mean of its windows' genre probabilities; a file that cannot be used is listed with the reason.
- Similar tracks: a track is its mean window embedding (the tagger's ``embedding`` layer); neighbours by
  cosine similarity. The dataset's embeddings are computed once per (tagger, dataset) and cached in the
  tagger's run directory, ``embeddings/<hash of the dataset's path>.npz``, together with a fingerprint of
  the tagger's model.keras and of the dataset's index: a retrained tagger or a changed dataset refreshes it.
- Judging (the generated clips of a WaveNet): per clip the tagger's top genre and its probability, the
  probability of the genre it was asked for, its spectral flatness and its nearest training track (a
  memorization check); for the set, genre accuracy, flatness ratio against real test excerpts of the same
  length, the Frechet distance between the clips' window embeddings and those of real test excerpts, and the
  same distance between two disjoint sets of real excerpts (the floor: "as good as real").
  :class:`Judge` loads the tagger, the dataset's embeddings and the real excerpts' statistics once and judges
  any number of batches of clips (WAV paths, waveforms or codes); :func:`judge_clips` is the one-call form
  (it keeps its Judges, so calling it every N training steps costs only the clips' own analysis).
"""
import csv
import functools
import hashlib
import os

import numpy as np

from local import audio, dataset_store, tagger
from local.audio import mu_law_decode
from local.config import StageError
from local.decoding import decode_track
from local.fileio import atomic_write
from local.preprocessing import is_audio_path

TRACK_WINDOWS = 16  # windows averaged per dataset track or tagged file (evenly spread, non-overlapping)
MAX_REFERENCE_EXCERPTS = 64  # real excerpts the clips are compared with (bounds the judge's time)


# --- figures on arrays ---------------------------------------------------------------------------------

def spectral_flatness(y, n_fft=2048, hop_length=512):
    """Mean over frames of the spectral flatness of mono float audio ``y`` (n_samples,): geometric over
    arithmetic mean of the power spectrum (librosa.feature.spectral_flatness), 0 = pure tones, 1 = white
    noise. A clip shorter than ``n_fft`` uses one frame of its own length."""
    import librosa
    y = np.asarray(y, dtype=np.float32)
    n_fft = min(n_fft, max(16, len(y)))
    return float(librosa.feature.spectral_flatness(y=y, n_fft=n_fft, hop_length=min(hop_length, n_fft)).mean())


ONSET_FLOOR_DB = -60.0  # quieter than this (dB below a full-scale sine) is silence to the onset detector


@functools.lru_cache(maxsize=8)
def full_scale_mel_power(sample_rate, hop_length=512):
    """The largest mel power of a full-scale 1 kHz sine at ``sample_rate`` (librosa's default mel settings):
    the 0 dB of :func:`onset_rate`."""
    import librosa
    t = np.arange(4 * 2048) / sample_rate
    sine = np.sin(2 * np.pi * min(1000.0, sample_rate / 4) * t).astype(np.float32)
    return float(librosa.feature.melspectrogram(y=sine, sr=sample_rate, hop_length=hop_length).max())


def onset_rate(y, sample_rate, hop_length=512, floor_db=ONSET_FLOOR_DB):
    """Onsets per second of mono float audio ``y`` (n_samples,) at ``sample_rate`` Hz: librosa's onset detection
    (librosa.onset.onset_detect on the onset strength of a log-mel spectrogram, frames of ``hop_length``
    samples; peaks at least 50 ms apart), with everything quieter than ``floor_db`` dB below a full-scale sine
    taken as silence, so a near-silent clip's dither is no rhythm. A click every 0.5 s gives about 2 (one at
    the very start is not counted); silence 0; the demo corpus at 16 kHz: Ambient ~0.5, Folk ~3, Electronic
    ~4.5."""
    import librosa
    y = np.asarray(y, dtype=np.float32)
    if len(y) < 2 * hop_length:
        return 0.0
    ref = full_scale_mel_power(int(sample_rate), hop_length)
    mel = librosa.feature.melspectrogram(y=y, sr=sample_rate, hop_length=hop_length, n_fft=min(2048, len(y)))
    log_mel = librosa.power_to_db(mel, ref=ref, amin=ref * 10 ** (floor_db / 10), top_db=None)
    strength = librosa.onset.onset_strength(S=log_mel, sr=sample_rate, hop_length=hop_length)

    def frames(seconds):  # librosa's peak-picking defaults, in seconds (they round to 0 frames at 16 kHz)
        return max(1, int(round(seconds * sample_rate / hop_length)))
    onsets = librosa.onset.onset_detect(onset_envelope=strength, sr=sample_rate, hop_length=hop_length,
                                        pre_max=frames(0.03), post_max=frames(0.03), pre_avg=frames(0.1),
                                        post_avg=frames(0.1), wait=frames(0.05), delta=0.07)
    return len(onsets) * sample_rate / len(y)


def onset_rates_by_genre(clip_rates, clip_genres, real_rates, real_genres):
    """Per genre and overall, the clips' mean onset rate against real excerpts' of the same genre.

    clip_rates / clip_genres: one onset rate (per second) and asked genre per clip; real_rates / real_genres:
    the same for real excerpts. Returns (overall dict, {genre: dict}), each dict ``clip_onset_rate``,
    ``real_onset_rate`` and ``onset_rate_ratio`` (clips' mean over the real mean; None without real excerpts
    or when they hold no onset). Overall, each clip is compared with its own genre's real rate (the real
    rate is the mean over the clips of their genre's real mean), so an uneven real split weighs nothing;
    a clip asked for no genre, or for a genre without real excerpts, is compared with all real excerpts.
    """
    real_rates, real_genres = np.asarray(real_rates, np.float64), np.asarray(real_genres)
    everything = float(real_rates.mean()) if len(real_rates) else None

    def real_mean(genre):
        mine = real_rates[real_genres == genre]
        return float(mine.mean()) if len(mine) else everything

    def figures(rates, expected):
        clip = float(np.mean(rates)) if len(rates) else None
        real = None if not len(expected) or any(e is None for e in expected) else float(np.mean(expected))
        return {"clip_onset_rate": clip, "real_onset_rate": real,
                "onset_rate_ratio": clip / real if clip is not None and real else None}

    expected = [real_mean(g) for g in clip_genres]
    per_genre = {}
    for genre in sorted({g for g in clip_genres if g}):
        mine = [r for r, g in zip(clip_rates, clip_genres) if g == genre]
        per_genre[genre] = {**figures(mine, [real_mean(genre)]), "n_clips": len(mine),
                            "n_real_excerpts": int((real_genres == genre).sum())}
    return figures(list(clip_rates), expected), per_genre


def trace_sqrt_product(s_a, s_b):
    """Tr((S_a S_b)^1/2) of two covariance matrices (D, D): the sum of the square roots of the eigenvalues of
    the symmetric S_a^1/2 S_b S_a^1/2 (the same eigenvalues as S_a S_b, all >= 0). Equals scipy's
    ``sqrtm(S_a @ S_b)`` trace within 1e-7 (relative) and is 10-30x faster in 200 dimensions; singular
    (few-sample) covariances need no nudging."""
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root_a @ s_b @ root_a
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(a, b):
    """Frechet distance between Gaussians fitted to two sets of embeddings a (n, D) and b (m, D), n, m >= 2:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), as in FID and FAD. Biased upwards for small sets,
    so compare it only with a distance between sets of the same sizes (the judge's floor)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                     - 2.0 * trace_sqrt_product(s_a, s_b)))


def cosine_similarities(query, table):
    """Cosine similarity of one vector (D,) with each row of ``table`` (n, D): (n,) float64."""
    q = np.asarray(query, np.float64)
    t = np.asarray(table, np.float64)
    return t @ q / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(q), 1e-12)


# --- a trained tagger ----------------------------------------------------------------------------------

class Tagger:
    """A tagger run loaded for use: ``run_dir``, ``info`` (its model.json), ``config`` (TaggerConfig),
    ``genres``, ``sample_rate``, ``quantization_channels``, ``decode`` (its dataset's stage-2 DecodeSettings),
    ``model`` and ``readout`` (embeddings and logits). StageError (one line) when ``run_dir`` is no trained
    tagger run."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.config, self.info = tagger.read_tagger_run(run_dir)
        self.genres = list(self.info["genres"])
        self.sample_rate = int(self.info["sample_rate"])
        self.quantization_channels = int(self.info["quantization_channels"])
        self.decode = tagger.decode_settings(self.info)
        import keras
        self.model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
        self.readout = tagger.readout_model(self.model)
        # a transfer-mode tagger (tagger_features=mtt): the pretrained network gives its input
        self.features = tagger.feature_function(self.config.features) if self.config.pretrained else None

    def analyze(self, code_arrays, max_windows=TRACK_WINDOWS, progress=None):
        """(window embeddings, window probabilities) of each code array; see :func:`local.tagger.analyze` (a
        transfer-mode tagger's windows are its pretrained patches: :func:`local.tagger.analyze_features`)."""
        if self.features is not None:
            return tagger.analyze_features(self.readout, self.features, code_arrays, sample_rate=self.sample_rate,
                                           max_windows=min(max_windows, tagger.MAX_PATCHES),
                                           quantization_channels=self.quantization_channels, progress=progress)
        return tagger.analyze(self.readout, code_arrays, input_samples=self.config.input_samples,
                              max_windows=max_windows, quantization_channels=self.quantization_channels,
                              progress=progress)

    def analyze_tracks(self, rows, progress=True):
        """:meth:`analyze` of dataset tracks (index rows), TRACK_WINDOWS windows each. A transfer-mode tagger
        reads the patch embeddings its training cached (``run_dir/features``; the same MAX_PATCHES patches), so
        the pretrained network does not run over the dataset a second time."""
        from tqdm import tqdm
        if self.features is not None:
            table = tagger.dataset_features(self.features, rows, name=self.config.features,
                                            sample_rate=self.sample_rate,
                                            quantization_channels=self.quantization_channels,
                                            cache_dir=os.path.join(self.run_dir, "features"), progress=progress)
            return tagger.readout_features(self.readout, [table[str(r["track_id"])] for r in rows])
        out = []
        with tqdm(total=len(rows), desc=f"embedding {len(rows)} tracks", unit="track", disable=not progress) as bar:
            for first in range(0, len(rows), 8):
                chunk = rows[first:first + 8]
                out += self.analyze([dataset_store.read_track_codes(r) for r in chunk])
                bar.update(len(chunk))
        return out


def mismatch(tagger_info, genres, sample_rate, tagger_run, wavenet_run):
    """One line saying how a tagger does not fit a WaveNet (genres or sample rate), or "" when it does."""
    problems = []
    if list(tagger_info["genres"]) != list(genres):
        problems.append(f"its genres are {', '.join(tagger_info['genres'])}, the WaveNet's {', '.join(genres)}")
    if int(tagger_info["sample_rate"]) != int(sample_rate):
        problems.append(f"its sample rate is {tagger_info['sample_rate']} Hz, the WaveNet's {sample_rate} Hz")
    if not problems:
        return ""
    return (f"--judge={tagger_run}: this tagger does not fit {wavenet_run} ({'; '.join(problems)}): train a "
            f"tagger on the WaveNet's dataset (run_model_training.py --model=tagger --data_dir=...)")


# --- files ---------------------------------------------------------------------------------------------

def audio_argument_problem(key, path, folder_ok=True):
    """Why ``path`` given as ``--key`` is not an audio file (nor, with ``folder_ok``, a folder), or "": it does
    not exist, or it is a device, FIFO or socket (``--audio=/dev/zero``: never opened), or a folder where
    only a file or a track id will do (``--similar_to=<a run dir>``, said before any dataset is embedded)."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"--{key}={path}: no such file or folder" if folder_ok else ""
    except OSError as e:
        return f"--{key}={path}: cannot be read ({e.strerror})"
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return ""
    what = "a folder" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
    wanted = "an audio file or a folder of them" if folder_ok else "an audio file or a track_id of the dataset"
    return f"--{key}={path}: is {what}, not {wanted}: not read"


def audio_files(path):
    """The audio files to tag: ``path`` itself, or the files below the folder ``path`` with an audio extension
    (as stage 2 lists them: hidden files skipped), sorted. [] for an empty folder; FileNotFoundError if none."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(path)
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names)
                  if is_audio_path(os.path.relpath(os.path.join(root, n), path).replace(os.sep, "/"))]
    return found


def decode_files(paths, settings):
    """Yield (path, codes (n,) uint8 or None, reason) per file, decoded as stage 2 decodes it
    (:func:`local.decoding.decode_track` with the DecodeSettings ``settings``)."""
    from local.manifest import name_problem, printable_path
    for path in paths:
        if name_problem(path):  # no CSV holds its name: reported, not tagged
            yield printable_path(path), None, name_problem(path)
            continue
        track, reason = decode_track(path, settings)
        yield path, (np.frombuffer(track["codes"], dtype=np.uint8) if track else None), reason


def tag_files(tagger, paths, progress=True):
    """Genre probabilities of each file (decoded with the tagger's dataset's settings): a list of dicts ``path``,
    ``genre``, ``probability``, one key per genre, ``reason`` ("" when tagged; else ``genre`` is "" and the
    probabilities are None)."""
    from tqdm import tqdm
    rows = []
    for path, codes, reason in tqdm(decode_files(paths, tagger.decode), total=len(paths), desc="tagging", unit="file",
                                    disable=not progress):
        row = {"path": path, "genre": "", "probability": None, **{g: None for g in tagger.genres}, "reason": reason}
        if codes is not None:
            (_, probabilities), = tagger.analyze([codes])
            mean = probabilities.mean(axis=0)
            top = int(mean.argmax())
            row.update({"genre": tagger.genres[top], "probability": float(mean[top]),
                        **{g: float(p) for g, p in zip(tagger.genres, mean)}})
        rows.append(row)
    return rows


def write_csv(path, rows, columns):
    """``rows`` (dicts) as a CSV with ``columns``, atomically; floats with 6 significant digits."""
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                             for k, v in row.items()})
    return path


# --- dataset embeddings (cached) -----------------------------------------------------------------------

def dataset_fingerprint(tagger, index):
    """What the cached embeddings depend on: the tagger's model.keras bytes and the dataset's index."""
    digest = hashlib.sha256()
    with open(os.path.join(tagger.run_dir, "model.keras"), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    for row in index:
        digest.update(repr((str(row["track_id"]), row["genre"], row["split"], int(row["n_samples"]),
                            row.get("source_sha256"), os.path.basename(row["part"]), row["row_group"],
                            row.get("row_in_group", 0))).encode())
    digest.update(f"windows={TRACK_WINDOWS}".encode())
    return digest.hexdigest()


def embeddings_path(tagger, data_dir):
    """Where the embeddings of ``data_dir``'s tracks are cached in the tagger's run directory."""
    key = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:16]
    return os.path.join(tagger.run_dir, "embeddings", f"{key}.npz")


def dataset_embeddings(tagger, data_dir, progress=True):
    """Every track of ``data_dir`` as the tagger sees it, from the cache when it is current.

    Returns a dict of arrays, one entry per track: ``track_id``, ``genre``, ``split``, ``source_path`` (str),
    ``embedding`` (n, embedding_size) float32 (mean over up to TRACK_WINDOWS windows) and ``probabilities``
    (n, n_genres), plus ``refreshed`` (bool: computed now). The cache is rewritten atomically.
    """
    index = sorted(dataset_store.read_index(data_dir), key=lambda r: str(r["track_id"]))
    fingerprint = dataset_fingerprint(tagger, index)
    path = embeddings_path(tagger, data_dir)
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["fingerprint"]) == fingerprint:
                    return {**{k: cached[k] for k in cached.files if k != "fingerprint"}, "refreshed": False}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache is recomputed
    embeddings, probabilities = [], []
    for e, p in tagger.analyze_tracks(index, progress):
        embeddings.append(e.mean(axis=0))
        probabilities.append(p.mean(axis=0))
    table = {"track_id": np.asarray([str(r["track_id"]) for r in index]),
             "genre": np.asarray([str(r["genre"]) for r in index]),
             "split": np.asarray([str(r["split"]) for r in index]),
             "source_path": np.asarray([str(r.get("source_path") or "") for r in index]),
             "embedding": np.asarray(embeddings, np.float32).reshape(len(index), -1),
             "probabilities": np.asarray(probabilities).reshape(len(index), -1)}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, fingerprint=np.asarray(fingerprint), **table)
    return {**table, "refreshed": True}


def nearest(table, query_embedding, top_k, mask=None, exclude_track=None):
    """The ``top_k`` tracks of ``table`` (see :func:`dataset_embeddings`) by cosine similarity to one embedding:
    a list of dicts ``rank`` (1 = nearest), ``track_id``, ``genre``, ``similarity``, ``source_path``.
    ``mask`` (n,) bool restricts the candidates; ``exclude_track`` drops one track_id."""
    similarity = cosine_similarities(query_embedding, table["embedding"]) if len(table["track_id"]) else np.zeros(0)
    keep = np.ones(len(similarity), bool) if mask is None else np.asarray(mask, bool).copy()
    if exclude_track is not None:
        keep &= table["track_id"] != exclude_track
    order = [i for i in np.argsort(-similarity, kind="stable") if keep[i]][:top_k]
    return [{"rank": rank, "track_id": str(table["track_id"][i]), "genre": str(table["genre"][i]),
             "similarity": float(similarity[i]), "source_path": str(table["source_path"][i])}
            for rank, i in enumerate(order, start=1)]


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
        codes = dataset_store.read_track_codes(row)
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
        samples, rate, _ = audio.decode_audio(os.fspath(clip))
        clip = audio.resample(audio.to_mono(samples), rate, sample_rate)
    clip = np.asarray(clip)
    if np.issubdtype(clip.dtype, np.integer):
        return clip.astype(np.int64)
    return audio.mu_law_encode(np.clip(clip.astype(np.float32), -1, 1), quantization_channels).astype(np.int64)


def pick_excerpts(data_dir, n_samples, asked_genres):
    """The real excerpts of ``n_samples`` codes that clips asked for ``asked_genres`` are compared with: a dict
    ``reference`` and ``floor`` (lists of (n_samples,) code arrays), ``reference_genres`` and ``floor_genres``
    (their genres) and ``splits`` (the splits read). The excerpts come from the test tracks (and the valid tracks
    when the test tracks give fewer than two per clip): one per clip, of its asked genre where there is one,
    makes the floor set; the rest (up to MAX_REFERENCE_EXCERPTS, evenly spread) the reference set. When even
    both splits give fewer than two per clip, every excerpt is in the reference set and the floor is empty."""
    index = dataset_store.read_index(data_dir)
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


class Judge:
    """Judges generated clips with a tagger against a dataset's held-out tracks (the WaveNet's dataset).

    Loads once: the tagger (``tagger_run``, or a loaded :class:`Tagger`), the dataset's track embeddings
    (:func:`dataset_embeddings`, on first use) and, per clip length and asked genres, the real excerpts'
    embeddings and flatness; so :meth:`judge` called again (every N training steps) costs the clips only.
    StageError (one line) when the tagger run or ``data_dir`` cannot be used.
    """

    def __init__(self, tagger_run, data_dir, *, progress=False):
        self.tagger = tagger_run if isinstance(tagger_run, Tagger) else Tagger(tagger_run)
        if not data_dir or not dataset_store.list_parts(data_dir):
            raise StageError(f"data_dir={data_dir!r} holds no processed dataset, needed to judge clips against "
                             f"real excerpts: pass --data_dir=FOLDER")
        from local.checks import evaluation_dataset_problem  # the rate --evaluate and --similar_to check too
        problem = evaluation_dataset_problem(self.tagger.sample_rate, dataset_store.read_dataset_json(data_dir),
                                             data_dir, self.tagger.run_dir)
        if problem:
            raise StageError(problem)
        self.data_dir, self.progress = data_dir, progress
        self._table, self._real = None, {}

    @property
    def table(self):
        """The dataset's track embeddings (:func:`dataset_embeddings`), computed or read once."""
        if self._table is None:
            self._table = dataset_embeddings(self.tagger, self.data_dir, progress=self.progress)
        return self._table

    def real_side(self, n_samples, asked_genres):
        """The real excerpts of ``n_samples`` the clips are compared with (memoized per length and genres): a
        dict of ``reference`` and ``floor`` window embeddings (lists of (k, D) arrays), ``flatness`` (one per
        excerpt) and ``splits``; the excerpts are :func:`pick_excerpts`'s."""
        key = (int(n_samples), tuple(asked_genres))
        if key in self._real:
            return self._real[key]
        picked = pick_excerpts(self.data_dir, n_samples, asked_genres)
        reference, floor_set, splits = picked["reference"], picked["floor"], picked["splits"]
        windows = [e for e, _ in self.tagger.analyze(reference + floor_set)]
        n_codes, rate = self.tagger.quantization_channels, self.tagger.sample_rate
        waves = [mu_law_decode(c, n_codes) for c in reference + floor_set]
        self._real[key] = {"reference": windows[:len(reference)], "floor": windows[len(reference):],
                           "flatness": [spectral_flatness(w) for w in waves],
                           "onset_rates": [onset_rate(w, rate) for w in waves],
                           "genres": picked["reference_genres"] + picked["floor_genres"],
                           "splits": splits}
        return self._real[key]

    def judge(self, clips, asked_genres):
        """Judge generated clips: (per-clip dicts, summary dict); see README "Judging generated music".

        clips         a list of WAV paths, float waveforms (n,) in [-1, 1] at the tagger's sample rate, or
                      code arrays (n,) int of the tagger's quantization (see :func:`clip_codes`); cut to the
                      shortest
        asked_genres  the genre each clip was asked for ("" = none)
        Per clip: top_genre, top_genre_probability, asked_genre, asked_genre_probability, spectral_flatness,
        onset_rate (per second, :func:`onset_rate`), nearest_training_track, nearest_training_genre,
        nearest_similarity. Summary: genre_accuracy, flatness_ratio, frechet_distance, frechet_distance_floor,
        onset_rate_ratio (the clips' onset rate over real excerpts' of the same genres,
        :func:`onset_rates_by_genre`), n_clips, how they were made, and ``per_genre``: per asked genre
        genre_accuracy, clip_flatness, clip_onset_rate, real_onset_rate, onset_rate_ratio, n_clips,
        n_real_excerpts.
        """
        tagger, n_codes = self.tagger, self.tagger.quantization_channels
        codes = [clip_codes(c, tagger.sample_rate, n_codes) for c in clips]
        n_samples = min(len(c) for c in codes)
        codes = [c[:n_samples] for c in codes]
        real = self.real_side(n_samples, list(asked_genres))
        analyzed = tagger.analyze(codes)
        train_mask = self.table["split"] == "train"
        per_clip = []
        for clip, genre, (embeddings, probabilities) in zip(codes, asked_genres, analyzed):
            mean = probabilities.mean(axis=0)
            top = int(mean.argmax())
            near = nearest(self.table, embeddings.mean(axis=0), 1, mask=train_mask)
            per_clip.append({"top_genre": tagger.genres[top], "top_genre_probability": float(mean[top]),
                             "asked_genre": genre,
                             "asked_genre_probability": float(mean[tagger.genres.index(genre)])
                             if genre in tagger.genres else None,
                             "spectral_flatness": spectral_flatness(mu_law_decode(clip, n_codes)),
                             "onset_rate": onset_rate(mu_law_decode(clip, n_codes), tagger.sample_rate),
                             "nearest_training_track": near[0]["track_id"] if near else None,
                             "nearest_training_genre": near[0]["genre"] if near else None,
                             "nearest_similarity": near[0]["similarity"] if near else None})
        asked = [c for c in per_clip if c["asked_genre"] in tagger.genres]
        clip_windows = np.concatenate([e for e, _ in analyzed])
        real_flatness = float(np.mean(real["flatness"])) if real["flatness"] else None

        def distance(windows):
            together = np.concatenate(windows) if windows else np.zeros((0, 1))
            if len(clip_windows) < 2 or len(together) < 2 or not real["reference"]:
                return None
            return frechet_distance(together, np.concatenate(real["reference"]))

        clip_flatness = float(np.mean([c["spectral_flatness"] for c in per_clip]))
        onsets, per_genre = onset_rates_by_genre([c["onset_rate"] for c in per_clip], list(asked_genres),
                                                 real["onset_rates"], real["genres"])
        for genre, figures in per_genre.items():
            mine = [c for c in per_clip if c["asked_genre"] == genre]
            figures["genre_accuracy"] = float(np.mean([c["top_genre"] == genre for c in mine])) \
                if genre in tagger.genres else None
            figures["clip_flatness"] = float(np.mean([c["spectral_flatness"] for c in mine]))
        summary = {"genre_accuracy": float(np.mean([c["top_genre"] == c["asked_genre"] for c in asked]))
                   if asked else None,
                   "flatness_ratio": clip_flatness / real_flatness if real_flatness else None,
                   "frechet_distance": distance([e for e, _ in analyzed]),
                   "frechet_distance_floor": distance(real["floor"]) if len(real["floor"]) == len(codes) else None,
                   "onset_rate_ratio": onsets["onset_rate_ratio"],
                   "n_clips": len(per_clip), "clip_flatness": clip_flatness, "real_flatness": real_flatness,
                   "clip_onset_rate": onsets["clip_onset_rate"], "real_onset_rate": onsets["real_onset_rate"],
                   "n_reference_excerpts": len(real["reference"]), "n_floor_excerpts": len(real["floor"]),
                   "excerpt_seconds": n_samples / tagger.sample_rate, "excerpt_splits": real["splits"],
                   "tagger_run": tagger.run_dir, "data_dir": str(self.data_dir), "per_genre": per_genre}
        return per_clip, summary


_JUDGES = {}  # (tagger run, model.keras mtime, data_dir) -> Judge: judge_clips loads each once per process


def judge_clips(clips, asked_genres, tagger_run, data_dir):
    """Judge generated clips (WAV paths, waveforms or codes; see :meth:`Judge.judge`) with the tagger in
    ``tagger_run`` against ``data_dir``'s held-out tracks: (per-clip dicts, summary dict with genre_accuracy,
    flatness_ratio, frechet_distance, frechet_distance_floor, n_clips). The Judge is kept between calls (a
    retrained tagger is reloaded), so calling it at every sampling step of a training run is cheap."""
    model_path = os.path.join(tagger_run, "model.keras")
    key = (os.path.abspath(tagger_run), os.path.getmtime(model_path) if os.path.isfile(model_path) else None,
           os.path.abspath(data_dir))
    if key not in _JUDGES:
        _JUDGES[key] = Judge(tagger_run, data_dir)
    return _JUDGES[key].judge(clips, asked_genres)


def summary_line(summary):
    """The judge summary in one line for a person: the project's tagger's figures and/or the external ear's
    (local/external_judge.py)."""
    def show(value, spec):
        return "-" if value is None else format(value, spec)
    parts = []
    if "genre_accuracy" in summary:
        parts.append(f"genre accuracy {show(summary['genre_accuracy'], '.2f')}, flatness ratio "
                     f"{show(summary['flatness_ratio'], '.2f')} (real = 1), onset rate ratio "
                     f"{show(summary.get('onset_rate_ratio'), '.2f')} (real = 1), Frechet distance "
                     f"{show(summary['frechet_distance'], '.3g')} (real vs real "
                     f"{show(summary['frechet_distance_floor'], '.3g')})")
    if "external_frechet_distance" in summary:
        parts.append(f"external ({summary['external_model']}): Frechet distance "
                     f"{show(summary['external_frechet_distance'], '.3g')} (real vs real "
                     f"{show(summary['external_frechet_floor'], '.3g')}), tag similarity "
                     f"{show(summary['external_tag_similarity'], '.2f')} (real "
                     f"{show(summary['external_tag_similarity_floor'], '.2f')})")
    return f"judge: {'; '.join(parts)} over {summary['n_clips']} clips"


def per_genre_line(per_genre):
    """The judge's figures per genre in one line for a person: accuracy and onset rate ratio."""
    def show(value, spec):
        return "-" if value is None else format(value, spec)
    return "per genre: " + "; ".join(
        f"{genre} accuracy {show(f.get('genre_accuracy'), '.2f')}, onset rate ratio "
        f"{show(f.get('onset_rate_ratio'), '.2f')} ({show(f.get('clip_onset_rate'), '.1f')} vs "
        f"{show(f.get('real_onset_rate'), '.1f')} onsets/s)" for genre, f in per_genre.items())


def clip_line(clip):
    """A generated clip's WAV path with the judge's verdict on it, for a person."""
    verdict = clip["judge"]
    said = []
    if "top_genre" in verdict:
        said.append(f"judged {verdict['top_genre']} {verdict['top_genre_probability']:.2f}, "
                    f"flatness {verdict['spectral_flatness']:.3f}, {verdict.get('onset_rate', float('nan')):.1f} onsets/s")
    if "external_top_tags" in verdict:
        said.append(f"tags {verdict['external_top_tags']}")
    return f"{clip['wav']}  ({'; '.join(said)})"


# --- stage 4's tagger commands (run_model_predictions.py --audio / --similar_to / --judge) -------------------

def tag_command(run_dir, audio, out_dir):
    """``--audio=FILE_OR_FOLDER``: tag every audio file into ``out_dir/tags.csv``; return its path."""
    if audio_argument_problem("audio", audio):
        raise StageError(audio_argument_problem("audio", audio))
    try:
        paths = audio_files(audio)
    except FileNotFoundError:
        raise StageError(f"--audio={audio}: no such file or folder") from None
    if not paths:
        raise StageError(f"--audio={audio}: the folder holds no audio files (looked for the extensions stage 2 "
                         f"reads, e.g. .mp3 .flac .wav .ogg .m4a)")
    tagger = Tagger(run_dir)
    rows = tag_files(tagger, paths)
    os.makedirs(out_dir, exist_ok=True)
    path = write_csv(os.path.join(out_dir, "tags.csv"), rows, ["path", "genre", "probability", *tagger.genres, "reason"])
    failed = [r for r in rows if not r["genre"]]
    for row in failed:
        print(f"unreadable: {row['path']}: {row['reason']}")
    print(f"tagged {len(rows) - len(failed)} of {len(rows)} files ({len(failed)} unreadable) -> {path}")
    return path


def similar_command(run_dir, similar_to, top_k, out_dir, data_dir=""):
    """``--similar_to=FILE_OR_TRACK_ID``: the ``top_k`` dataset tracks nearest to it into
    ``out_dir/similar.csv``; return its path. A track id is looked up in the dataset (and not listed itself)."""
    if audio_argument_problem("similar_to", similar_to, folder_ok=False):
        raise StageError(audio_argument_problem("similar_to", similar_to, folder_ok=False))
    tagger = Tagger(run_dir)
    data_dir = data_dir or tagger.info.get("data_dir", "")
    if not data_dir or not dataset_store.list_parts(data_dir):
        raise StageError(f"data_dir={data_dir!r} holds no processed dataset to search: pass --data_dir=FOLDER")
    data_info = dataset_store.read_dataset_json(data_dir) or {}
    if int(data_info.get("sample_rate", tagger.sample_rate)) != tagger.sample_rate:
        raise StageError(f"--data_dir={data_dir} is at {data_info['sample_rate']} Hz, the tagger at "
                         f"{tagger.sample_rate} Hz: pass a dataset made at {tagger.sample_rate} Hz")
    table = dataset_embeddings(tagger, data_dir)
    print(f"{'computed' if table['refreshed'] else 'cached'} embeddings of {len(table['track_id'])} tracks: "
          f"{embeddings_path(tagger, data_dir)}")
    def embed_file(path):
        (_, codes, reason), = decode_files([path], tagger.decode)
        return (None, reason) if codes is None else (tagger.analyze([codes])[0][0].mean(axis=0), "")

    return write_similar(table, similar_to, embed_file, top_k, out_dir, data_dir)


def write_similar(table, similar_to, embed_file, top_k, out_dir, data_dir):
    """``--similar_to``'s answer for any embedding: the ``top_k`` rows of ``table`` (:func:`dataset_embeddings`'s
    or a pretrained tagger's) nearest to a file (``embed_file(path) -> (mean embedding, "")`` or ``(None,
    reason)``) or to a track id of the dataset (not listed itself), into ``out_dir/similar.csv``, printed;
    returns its path. StageError (one line) for a file that cannot be read or an unknown track id."""
    if os.path.isfile(similar_to):
        embedding, reason = embed_file(similar_to)
        if embedding is None:
            raise StageError(f"--similar_to={similar_to}: cannot be read: {reason}")
        rows = nearest(table, embedding, top_k)
    else:
        matches = np.flatnonzero(table["track_id"] == similar_to)
        if not len(matches):
            examples = ", ".join(str(t) for t in table["track_id"][:3])
            raise StageError(f"--similar_to={similar_to}: neither a file nor a track_id of {data_dir} "
                             f"(ids look like: {examples})")
        rows = nearest(table, table["embedding"][matches[0]], top_k, exclude_track=similar_to)
    os.makedirs(out_dir, exist_ok=True)
    path = write_csv(os.path.join(out_dir, "similar.csv"), rows, ["rank", "track_id", "genre", "similarity", "source_path"])
    for row in rows:
        print(f"{row['rank']:>3}  {row['similarity']:.3f}  {row['genre']:<16}{row['track_id']}")
    print(path)
    return path


def tagger_commands(config):
    """Stage 4 with a tagger ``run_dir``: ``--audio`` (tags.csv) and/or ``--similar_to`` (similar.csv)."""
    if config["audio"]:
        tag_command(config["run_dir"], config["audio"], config["out_dir"])
    if config["similar_to"]:
        similar_command(config["run_dir"], config["similar_to"], config["top_k"], config["out_dir"],
                        config["data_dir"])


def judge_generation(judge, clips, codes, quantization_channels):
    """After generating: add ``judge`` to each clip dict of generation.json (in place); return the
    ``judge_summary`` dict (its ``per_genre`` dict goes to generation.json as ``judge_per_genre``).
    codes: the generated codes, one (n,) array per clip (the prime left out)."""
    per_clip, summary = judge.judge([mu_law_decode(c, quantization_channels) for c in codes],
                                    [c["genre"] for c in clips])
    for clip, verdict in zip(clips, per_clip):
        clip["judge"] = verdict
    return summary
