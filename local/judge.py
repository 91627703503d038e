"""Use a trained genre tagger (local/tagger.py): tag audio files, find similar tracks, judge generated clips.

- Tagging: every audio file of a file or folder is decoded exactly as stage 2 decodes it
  (:func:`local.preprocessing.process_batch` with the settings the tagger's dataset was made with), and gets
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
"""
import csv
import hashlib
import os
import warnings

import numpy as np

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


def frechet_distance(a, b, eps=1e-6):
    """Frechet distance between Gaussians fitted to two sets of embeddings a (n, D) and b (m, D), n, m >= 2:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), as in FID and FAD. Biased upwards for small sets,
    so compare it only with a distance between sets of the same sizes (the judge's floor)."""
    from scipy import linalg
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # few embeddings in many dimensions: a singular product is expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root, _ = linalg.sqrtm(s_a @ s_b, disp=False)
    if not np.isfinite(root).all():  # a singular product: nudge both covariances (FID's reference code)
        offset = np.eye(len(s_a)) * eps
        root = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    root = np.real(root)
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(root)))


def cosine_similarities(query, table):
    """Cosine similarity of one vector (D,) with each row of ``table`` (n, D): (n,) float64."""
    q = np.asarray(query, np.float64)
    t = np.asarray(table, np.float64)
    return t @ q / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(q), 1e-12)


# --- a trained tagger ----------------------------------------------------------------------------------

class Tagger:
    """A tagger run loaded for use: ``run_dir``, ``info`` (its model.json), ``config`` (TaggerConfig),
    ``genres``, ``sample_rate``, ``model`` and ``readout`` (embeddings and logits)."""

    def __init__(self, run_dir):
        import keras

        from local import tagger, training
        self.run_dir = run_dir
        self.info = training.read_model_json(run_dir)
        self.config = tagger.TaggerConfig.from_dict(self.info["model"])
        self.genres = list(self.info["genres"])
        self.sample_rate = int(self.info["sample_rate"])
        self.quantization_channels = int(self.info["quantization_channels"])
        self.model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
        self.readout = tagger.readout_model(self.model)

    def analyze(self, code_arrays, max_windows=TRACK_WINDOWS, progress=None):
        """(window embeddings, window probabilities) of each code array; see :func:`local.tagger.analyze`."""
        from local import tagger
        return tagger.analyze(self.readout, code_arrays, input_samples=self.config.input_samples,
                              max_windows=max_windows, quantization_channels=self.quantization_channels,
                              progress=progress)


def tagger_problem(run_dir):
    """Why ``run_dir`` is not a trained tagger run (one line), or ""."""
    from local import tagger, training
    for name in ("model.json", "model.keras"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            return (f"{os.path.join(run_dir, name)} is missing: {run_dir!r} is not a trained tagger run "
                    f"(train one with run_model_training.py --model=tagger --run_dir={run_dir})")
    kind = tagger.run_kind(training.read_model_json(run_dir))
    if kind != tagger.KIND:
        return (f"{run_dir!r} is a {kind} run, not a tagger: train one with run_model_training.py --model=tagger "
                f"and pass its run_dir")
    return ""


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

def audio_files(path):
    """The audio files to tag: ``path`` itself, or the files below the folder ``path`` with an audio extension
    (as stage 2 lists them: hidden files skipped), sorted. [] for an empty folder; FileNotFoundError if none."""
    from local.preprocessing import is_audio_path
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
    """Yield (path, codes (n,) uint8 or None, reason) per file, decoded as stage 2 decodes (a batch per ffmpeg).

    settings: the keyword arguments of :func:`local.preprocessing.codes_from_samples` after the audio
    (:func:`local.tagger.preprocessing_settings`).
    """
    from local import preprocessing
    items = [{"track_id": os.path.basename(p), "genre": "", "path": p, "split": "", "sha256": ""} for p in paths]
    for batch in preprocessing.batches(items, preprocessing.file_size):
        for item, result, reason in preprocessing.process_batch(batch, settings):
            if result is None:
                yield item["path"], None, reason
            else:
                yield item["path"], np.frombuffer(result["codes"], dtype=np.uint8), ""


def tag_files(tagger, paths, settings, progress=True):
    """Genre probabilities of each file: a list of dicts ``path``, ``genre``, ``probability``, one key per genre,
    ``reason`` ("" when tagged; else ``genre`` is "" and the probabilities are None)."""
    from tqdm import tqdm
    rows = []
    for path, codes, reason in tqdm(decode_files(paths, settings), total=len(paths), desc="tagging", unit="file",
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
    from local.fileio import atomic_write
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                             for k, v in row.items()})
    return path


# --- dataset embeddings (cached) -----------------------------------------------------------------------

def read_row_codes(row):
    from local import dataset_store
    return dataset_store.read_codes(row["part"], row["row_group"], row.get("row_in_group", 0))


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
    from tqdm import tqdm

    from local import dataset_store
    from local.fileio import atomic_write
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
    bar = tqdm(total=len(index), desc=f"embedding {len(index)} tracks", unit="track", disable=not progress)
    for first in range(0, len(index), 8):
        rows = index[first:first + 8]
        for e, p in tagger.analyze([read_row_codes(r) for r in rows]):
            embeddings.append(e.mean(axis=0))
            probabilities.append(p.mean(axis=0))
        bar.update(len(rows))
    bar.close()
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


def real_excerpts(rows, n_samples, read_codes=read_row_codes, offset=0):
    """Non-overlapping excerpts of ``n_samples`` codes from ``rows`` (starting ``offset`` into each track):
    a dict genre -> list of (n_samples,) code arrays, the tracks of a genre taking turns (so a genre's first
    excerpts come from different tracks)."""
    per_track = {}
    for row in rows:
        codes = read_codes(row)
        starts = range(int(offset), len(codes) - n_samples + 1, n_samples)
        per_track.setdefault(row["genre"], []).append([codes[s:s + n_samples].copy() for s in starts])
    out = {}
    for genre, tracks in per_track.items():
        longest = max((len(t) for t in tracks), default=0)
        out[genre] = [t[j] for j in range(longest) for t in tracks if j < len(t)]
    return out


def judge_clips(tagger, clip_codes, asked_genres, data_dir, *, progress=True):
    """Judge generated clips against the test tracks of ``data_dir`` (the WaveNet's dataset).

    clip_codes    a list of (n,) int code arrays, the generated audio (all of one length)
    asked_genres  the genre each clip was asked for ("" = none)
    Returns (per-clip dicts, summary dict); see the module docstring and README "Judging generated music".
    The real excerpts have the clips' length, cut from the test tracks (and the valid tracks too when the test
    tracks give fewer than two per clip): one excerpt per clip, of its asked genre where there is one, makes
    the floor set; the rest (up to MAX_REFERENCE_EXCERPTS) the reference set.
    """
    from local import dataset_store
    from local.audio import mu_law_decode
    n_codes = tagger.quantization_channels
    n_samples = min(len(c) for c in clip_codes)
    clip_codes = [np.asarray(c)[:n_samples] for c in clip_codes]
    table = dataset_embeddings(tagger, data_dir, progress=progress)
    index = dataset_store.read_index(data_dir)
    excerpts, splits = {}, []
    for split in ("test", "valid"):  # the valid tracks only when the test tracks hold too few excerpts
        if sum(len(v) for v in excerpts.values()) >= 2 * len(clip_codes):
            break
        rows = spread_rows([r for r in index if r["split"] == split], MAX_REFERENCE_EXCERPTS + len(clip_codes))
        for genre, found in real_excerpts(rows, n_samples).items():
            excerpts.setdefault(genre, []).extend(found)
        splits.append(split)

    floor_set = []
    for genre in asked_genres:  # one real excerpt per clip, of the clip's genre when there is one
        pool = excerpts.get(genre) or max(excerpts.values(), key=len, default=[])
        if pool:
            floor_set.append(pool.pop(0))
    rest = [e for genre in sorted(excerpts) for e in excerpts[genre]]
    reference = [rest[int(i)] for i in np.unique(np.linspace(0, len(rest) - 1, num=min(len(rest),
                                                                                      MAX_REFERENCE_EXCERPTS)).round())] if rest else []

    clips = tagger.analyze(clip_codes)
    real = tagger.analyze(reference + floor_set)
    reference_windows = [e for e, _ in real[:len(reference)]]
    floor_windows = [e for e, _ in real[len(reference):]]
    train_mask = table["split"] == "train"

    per_clip = []
    for codes, genre, (embeddings, probabilities) in zip(clip_codes, asked_genres, clips):
        mean = probabilities.mean(axis=0)
        top = int(mean.argmax())
        near = nearest(table, embeddings.mean(axis=0), 1, mask=train_mask)
        per_clip.append({"top_genre": tagger.genres[top], "top_genre_probability": float(mean[top]),
                         "asked_genre": genre,
                         "asked_genre_probability": float(mean[tagger.genres.index(genre)])
                         if genre in tagger.genres else None,
                         "spectral_flatness": spectral_flatness(mu_law_decode(codes, n_codes)),
                         "nearest_training_track": near[0]["track_id"] if near else None,
                         "nearest_training_genre": near[0]["genre"] if near else None,
                         "nearest_similarity": near[0]["similarity"] if near else None})

    real_flatness = [spectral_flatness(mu_law_decode(c, n_codes)) for c in reference + floor_set]
    asked = [c for c in per_clip if c["asked_genre"] in tagger.genres]
    clip_windows = np.concatenate([e for e, _ in clips])

    def distance(windows):
        together = np.concatenate(windows) if windows else np.zeros((0, 1))
        if len(clip_windows) < 2 or len(together) < 2 or not reference_windows:
            return None
        return frechet_distance(together, np.concatenate(reference_windows))

    summary = {"genre_accuracy": float(np.mean([c["top_genre"] == c["asked_genre"] for c in asked]))
               if asked else None,
               "flatness_ratio": float(np.mean([c["spectral_flatness"] for c in per_clip]) / np.mean(real_flatness))
               if real_flatness and np.mean(real_flatness) > 0 else None,
               "frechet_distance": distance([e for e, _ in clips]),
               "frechet_distance_floor": distance(floor_windows) if len(floor_set) == len(clip_codes) else None,
               "n_clips": len(per_clip),
               "clip_flatness": float(np.mean([c["spectral_flatness"] for c in per_clip])),
               "real_flatness": float(np.mean(real_flatness)) if real_flatness else None,
               "n_reference_excerpts": len(reference), "n_floor_excerpts": len(floor_set),
               "excerpt_seconds": n_samples / tagger.sample_rate, "excerpt_splits": splits, "tagger_run": tagger.run_dir,
               "data_dir": str(data_dir)}
    return per_clip, summary


def summary_line(summary):
    """The judge summary in one line for a person."""
    def show(value, spec):
        return "-" if value is None else format(value, spec)
    return (f"judge: genre accuracy {show(summary['genre_accuracy'], '.2f')}, flatness ratio "
            f"{show(summary['flatness_ratio'], '.2f')} (real = 1), Frechet distance "
            f"{show(summary['frechet_distance'], '.3g')} (real vs real {show(summary['frechet_distance_floor'], '.3g')})"
            f" over {summary['n_clips']} clips")


# --- stage 4's tagger commands (run_model_predictions.py --audio / --similar_to / --judge) -------------------

def load_tagger_or_fail(run_dir, flag="--run_dir"):
    """A :class:`Tagger`, or one line naming ``flag`` and exit when ``run_dir`` is no trained tagger run."""
    from local.config import fail
    problem = tagger_problem(run_dir)
    if problem:
        fail(f"{flag}: {problem}")
    return Tagger(run_dir)


def tag_command(run_dir, audio, out_dir):
    """``--audio=FILE_OR_FOLDER``: tag every audio file into ``out_dir/tags.csv``; return its path."""
    from local.config import fail
    try:
        paths = audio_files(audio)
    except FileNotFoundError:
        fail(f"--audio={audio}: no such file or folder")
    if not paths:
        fail(f"--audio={audio}: the folder holds no audio files (looked for the extensions stage 2 reads, "
             f"e.g. .mp3 .flac .wav .ogg .m4a)")
    tagger = load_tagger_or_fail(run_dir)
    rows = tag_files(tagger, paths, tagger.info["preprocessing"])
    path = write_csv(os.path.join(out_dir, "tags.csv"), rows,
                     ["path", "genre", "probability", *tagger.genres, "reason"])
    failed = [r for r in rows if not r["genre"]]
    for row in failed:
        print(f"unreadable: {row['path']}: {row['reason']}")
    print(f"tagged {len(rows) - len(failed)} of {len(rows)} files ({len(failed)} unreadable) -> {path}")
    return path


def similar_command(run_dir, similar_to, top_k, out_dir, data_dir=""):
    """``--similar_to=FILE_OR_TRACK_ID``: the ``top_k`` dataset tracks nearest to it into
    ``out_dir/similar.csv``; return its path. A track id is looked up in the dataset (and not listed itself)."""
    from local import dataset_store
    from local.config import fail
    if top_k < 1:
        fail(f"--top_k={top_k}: must be at least 1")
    tagger = load_tagger_or_fail(run_dir)
    data_dir = data_dir or tagger.info.get("data_dir", "")
    if not data_dir or not dataset_store.list_parts(data_dir):
        fail(f"data_dir={data_dir!r} holds no processed dataset to search: pass --data_dir=FOLDER")
    data_info = dataset_store.read_dataset_json(data_dir) or {}
    if int(data_info.get("sample_rate", tagger.sample_rate)) != tagger.sample_rate:
        fail(f"--data_dir={data_dir} is at {data_info['sample_rate']} Hz, the tagger at {tagger.sample_rate} Hz: "
             f"pass a dataset made at {tagger.sample_rate} Hz")
    table = dataset_embeddings(tagger, data_dir)
    print(f"{'computed' if table['refreshed'] else 'cached'} embeddings of {len(table['track_id'])} tracks: "
          f"{embeddings_path(tagger, data_dir)}")
    if os.path.isfile(similar_to):
        (path, codes, reason), = decode_files([similar_to], tagger.info["preprocessing"])
        if codes is None:
            fail(f"--similar_to={similar_to}: cannot be read: {reason}")
        (embeddings, _), = tagger.analyze([codes])
        rows = nearest(table, embeddings.mean(axis=0), top_k)
    else:
        matches = np.flatnonzero(table["track_id"] == similar_to)
        if not len(matches):
            examples = ", ".join(str(t) for t in table["track_id"][:3])
            fail(f"--similar_to={similar_to}: neither a file nor a track_id of {data_dir} (ids look like: {examples})")
        rows = nearest(table, table["embedding"][matches[0]], top_k, exclude_track=similar_to)
    path = write_csv(os.path.join(out_dir, "similar.csv"), rows,
                     ["rank", "track_id", "genre", "similarity", "source_path"])
    for row in rows:
        print(f"{row['rank']:>3}  {row['similarity']:.3f}  {row['genre']:<16}{row['track_id']}")
    print(path)
    return path


def check_judge(tagger_run, genres, sample_rate, wavenet_run):
    """Before generating: the tagger for ``--judge``, or one line and exit when it is none or does not fit."""
    from local.config import fail
    tagger = load_tagger_or_fail(tagger_run, "--judge")
    problem = mismatch(tagger.info, genres, sample_rate, tagger_run, wavenet_run)
    if problem:
        fail(problem)
    return tagger


def judge_generation(tagger, clips, clip_codes, data_dir):
    """After generating: add ``judge`` to each clip dict (in place); return the ``judge_summary`` dict."""
    from local import dataset_store
    from local.config import fail
    if not data_dir or not dataset_store.list_parts(data_dir):
        fail(f"data_dir={data_dir!r} holds no processed dataset, needed by --judge for real test excerpts: "
             f"pass --data_dir=FOLDER", status=1)
    per_clip, summary = judge_clips(tagger, clip_codes, [c["genre"] for c in clips], data_dir)
    for clip, verdict in zip(clips, per_clip):
        clip["judge"] = verdict
    return summary
