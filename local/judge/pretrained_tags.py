"""Stage 4 with a pretrained tagger (local/judge/pretrained.py; ``run_model_predictions.py --tagger=mtt``): tag any
audio file, find the dataset tracks that sound most alike.

- Tagging (``--audio``): each file is decoded as it is (ffmpeg), downmixed to mono, resampled to 16 kHz and cut
  into 3 s patches (a shorter file is repeat-padded to one); its tag vector is the mean over all its patches.
  ``tags.csv`` lists each file's top tags with their probabilities, ``tag_scores.csv`` beside it the whole
  vector (a ``path`` column, then one column per tag, named as the model's labels).
- Similar tracks (``--similar_to``): a track is the mean of the penultimate-layer embeddings of up to
  TRACK_PATCHES patches, evenly spread; neighbours by cosine similarity, in any dataset (any genres: the
  pretrained tagger never saw them). Nothing is cached: the dataset's tracks are embedded at each call.
"""

import numpy as np

from local.audio import ffmpeg as audio_ffmpeg
from local.audio import waveform
from local.audio.waveform import mu_law_decode
from local.judge import pretrained
from local.store import dataset_files

TOP_TAGS = 5  # tags per file in tags.csv
TRACK_PATCHES = 16  # patches averaged per dataset track for --similar_to


def decode_for_tagging(path):
    """(mono float32 audio at 16 kHz (n,), reason): the file as it sounds, or (None, why it cannot be read)."""
    try:
        samples, rate, _ = audio_ffmpeg.decode_audio(path)
    except audio_ffmpeg.DecodeError as e:
        return None, str(e)
    y = pretrained.to_model_rate(waveform.to_mono(samples), rate)
    if not len(y):
        return None, "no audio"
    return y, ""


def tag_files(tagger, paths, progress=True):
    """The pretrained ``tagger``'s tag vector of each file: a list of dicts ``path``, ``tags`` ((50,) float32 mean
    over the file's patches, or None), ``n_patches``, ``seconds`` (of audio tagged) and ``reason`` ("" when
    tagged)."""
    from tqdm import tqdm
    rows = []
    for path in tqdm(paths, desc=f"tagging with {tagger.name}", unit="file", disable=not progress):
        y, reason = decode_for_tagging(path)
        row = {"path": path, "tags": None, "n_patches": 0, "seconds": 0.0, "reason": reason}
        if y is not None:
            (_, probabilities), = tagger.analyze([y])
            row.update(tags=probabilities.mean(axis=0), n_patches=len(probabilities),
                       seconds=len(y) / pretrained.SAMPLE_RATE)
        rows.append(row)
    return rows


def top_tag_rows(tagger, rows, k=TOP_TAGS):
    """tags.csv's rows: ``path``, ``tag_1``, ``probability_1`` ... ``tag_k``, ``probability_k``, ``n_patches``,
    ``reason``."""
    out = []
    for row in rows:
        line = {"path": row["path"], "n_patches": row["n_patches"], "reason": row["reason"]}
        top = tagger.top_tags(row["tags"], k) if row["tags"] is not None else []
        for rank in range(1, k + 1):
            tag, p = top[rank - 1] if rank <= len(top) else ("", None)
            line.update({f"tag_{rank}": tag, f"probability_{rank}": p})
        out.append(line)
    return out


def top_tag_columns(k=TOP_TAGS):
    return ["path", *[c for rank in range(1, k + 1) for c in (f"tag_{rank}", f"probability_{rank}")], "n_patches",
            "reason"]


def dataset_embeddings(tagger, data_dir, progress=True):
    """Every track of ``data_dir`` as the pretrained tagger hears it: a dict of arrays ``track_id``, ``genre``,
    ``split``, ``source_path`` (str) and ``embedding`` (n, embedding_size) float32, the mean over up to
    TRACK_PATCHES patches (the table :func:`local.judge.tagging.nearest` searches)."""
    from tqdm import tqdm

    info = dataset_files.read_dataset_json(data_dir) or {}
    rate, n_codes = int(info.get("sample_rate", 16000)), int(info.get("quantization_channels", 256))
    index = sorted(dataset_files.read_index(data_dir), key=lambda r: str(r["track_id"]))
    embeddings = []
    for row in tqdm(index, desc=f"embedding {len(index)} tracks with {tagger.name}", unit="track",
                    disable=not progress):
        y = mu_law_decode(dataset_files.read_track_codes(row), n_codes)
        (e, _), = tagger.analyze([y], sample_rate=rate, max_patches=TRACK_PATCHES)
        embeddings.append(e.mean(axis=0))
    return {"track_id": np.asarray([str(r["track_id"]) for r in index]),
            "genre": np.asarray([str(r["genre"]) for r in index]),
            "split": np.asarray([str(r["split"]) for r in index]),
            "source_path": np.asarray([str(r.get("source_path") or "") for r in index]),
            "embedding": np.asarray(embeddings, np.float32).reshape(len(index), tagger.embedding_size)}
