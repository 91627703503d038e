"""A trained genre tagger, loaded to listen: tagging tracks and files, the dataset's embeddings (cached) and
nearest-neighbour search in them.
"""
import csv
import hashlib
import os

import numpy as np

from local.audio.decoding import DecodeSettings, decode_track
from local.core.fileio import atomic_write
from local.judge import tagger_features as judge_tagger_features
from local.judge.figures import cosine_similarities
from local.model import tagger as model_tagger
from local.store import dataset_files
from local.store.audio_names import is_audio_path
from local.store.layout import RunDir

TRACK_WINDOWS = 16  # windows averaged per dataset track or tagged file (evenly spread, non-overlapping)


# --- a trained tagger ----------------------------------------------------------------------------------

class Tagger:
    """A tagger run loaded for use: ``run_dir``, ``info`` (its model.json), ``config`` (TaggerConfig),
    ``genres``, ``sample_rate``, ``quantization_channels``, ``decode`` (its dataset's stage-2 DecodeSettings),
    ``model`` and ``readout`` (embeddings and logits). StageError (one line) when ``run_dir`` is no trained
    tagger run."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.config, self.info = model_tagger.read_tagger_run(run_dir)
        self.genres = list(self.info["genres"])
        self.sample_rate = int(self.info["sample_rate"])
        self.quantization_channels = int(self.info["quantization_channels"])
        self.decode = DecodeSettings.from_dict(self.info["decode"])
        import keras
        self.model = keras.models.load_model(RunDir(run_dir).model_keras)
        self.readout = model_tagger.readout_model(self.model)
        # a transfer-mode tagger (tagger_features=mtt): the pretrained network gives its input
        self.features = judge_tagger_features.feature_function(self.config.features) if self.config.pretrained else None

    def analyze(self, code_arrays, max_windows=TRACK_WINDOWS, progress=None):
        """(window embeddings, window probabilities) of each code array; see :func:`local.model.tagger.analyze` (a
        transfer-mode tagger's windows are its pretrained patches: :func:`local.judge.tagger_features.analyze_features`)."""
        if self.features is not None:
            return judge_tagger_features.analyze_features(self.readout, self.features, code_arrays, sample_rate=self.sample_rate,
                                           max_windows=min(max_windows, judge_tagger_features.MAX_PATCHES),
                                           quantization_channels=self.quantization_channels, progress=progress)
        return model_tagger.analyze(self.readout, code_arrays, input_samples=self.config.input_samples,
                              max_windows=max_windows, quantization_channels=self.quantization_channels,
                              progress=progress)

    def analyze_tracks(self, rows, progress=True):
        """:meth:`analyze` of dataset tracks (index rows), TRACK_WINDOWS windows each. A transfer-mode tagger
        reads the patch embeddings its training cached (``run_dir/features``; the same MAX_PATCHES patches), so
        the pretrained network does not run over the dataset a second time."""
        from tqdm import tqdm
        if self.features is not None:
            table = judge_tagger_features.dataset_features(self.features, rows, name=self.config.features,
                                            sample_rate=self.sample_rate,
                                            quantization_channels=self.quantization_channels,
                                            cache_dir=RunDir(self.run_dir).features, progress=progress)
            return model_tagger.readout_features(self.readout, [table[str(r["track_id"])] for r in rows])
        out = []
        with tqdm(total=len(rows), desc=f"embedding {len(rows)} tracks", unit="track", disable=not progress) as bar:
            for first in range(0, len(rows), 8):
                chunk = rows[first:first + 8]
                out += self.analyze([dataset_files.read_track_codes(r) for r in chunk])
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
    (:func:`local.audio.decoding.decode_track` with the DecodeSettings ``settings``)."""
    from local.store.manifest import name_problem, printable_path
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
    with open(RunDir(tagger.run_dir).model_keras, "rb") as f:
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
    index = sorted(dataset_files.read_index(data_dir), key=lambda r: str(r["track_id"]))
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
