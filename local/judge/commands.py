"""The tagger commands of stage 4: ``--tag`` (tag audio files into a CSV) and ``--similar_to`` (the
dataset tracks nearest to a file in the tagger's embedding).
"""
import os

import numpy as np

from local.core.config import StageError
from local.judge import pretrained, pretrained_tags
from local.judge.tagging import (
    Tagger,
    audio_argument_problem,
    audio_files,
    dataset_embeddings,
    decode_files,
    embeddings_path,
    nearest,
    tag_files,
    write_csv,
)
from local.store import dataset_files

# --- stage 4's tagger commands (run_model_predictions.py --audio / --similar_to / --judge) -------------------

def audio_paths(audio):
    """The audio files ``--audio`` names (a file, or every audio file below a folder); StageError (one line)
    when there are none, or a device or FIFO (never opened)."""
    if audio_argument_problem("audio", audio):
        raise StageError(audio_argument_problem("audio", audio))
    try:
        paths = audio_files(audio)
    except FileNotFoundError:
        raise StageError(f"--audio={audio}: no such file or folder") from None
    if not paths:
        raise StageError(f"--audio={audio}: the folder holds no audio files (looked for the extensions stage 2 "
                         f"reads, e.g. .mp3 .flac .wav .ogg .m4a)")
    return paths


def similar_to_check(similar_to):
    """StageError (one line) when ``--similar_to`` names a folder, device or FIFO: said before the tagger loads
    or any dataset track is embedded (a run dir there took 47 s to be refused)."""
    if audio_argument_problem("similar_to", similar_to, folder_ok=False):
        raise StageError(audio_argument_problem("similar_to", similar_to, folder_ok=False))


def print_unreadable(rows, tagged):
    """Print each row that could not be read (``tagged(row)`` false) with its reason; return those rows."""
    failed = [r for r in rows if not tagged(r)]
    for row in failed:
        print(f"unreadable: {row['path']}: {row['reason']}")
    return failed


def tag_command(run_dir, audio, out_dir):
    """``--audio=FILE_OR_FOLDER``: tag every audio file into ``out_dir/tags.csv``; return its path."""
    paths = audio_paths(audio)
    tagger = Tagger(run_dir)
    rows = tag_files(tagger, paths)
    os.makedirs(out_dir, exist_ok=True)
    path = write_csv(os.path.join(out_dir, "tags.csv"), rows, ["path", "genre", "probability", *tagger.genres, "reason"])
    failed = print_unreadable(rows, lambda r: r["genre"])
    print(f"tagged {len(rows) - len(failed)} of {len(rows)} files ({len(failed)} unreadable) -> {path}")
    return path


def similar_command(run_dir, similar_to, top_k, out_dir, data_dir=""):
    """``--similar_to=FILE_OR_TRACK_ID``: the ``top_k`` dataset tracks nearest to it into
    ``out_dir/similar.csv``; return its path. A track id is looked up in the dataset (and not listed itself)."""
    similar_to_check(similar_to)
    tagger = Tagger(run_dir)
    data_dir = data_dir or tagger.info.get("data_dir", "")
    if not data_dir or not dataset_files.list_parts(data_dir):
        raise StageError(f"data_dir={data_dir!r} holds no processed dataset to search: pass --data_dir=FOLDER")
    data_info = dataset_files.read_dataset_json(data_dir) or {}
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
    """Stage 4 with a tagger: ``--audio`` (tags.csv; a pretrained tagger adds tag_scores.csv) and/or
    ``--similar_to`` (similar.csv), with the tagger run ``run_dir``, or with ``--tagger`` (a pretrained tagger's
    name, or a tagger run given that way)."""
    if config["tagger"] and pretrained.is_pretrained(config["tagger"]):
        if config["audio"]:
            pretrained_tag_command(config["tagger"], config["audio"], config["out_dir"])
        if config["similar_to"]:
            pretrained_similar_command(config["tagger"], config["similar_to"], config["top_k"], config["out_dir"],
                                       config["data_dir"])
        return
    if config["tagger"]:
        config = dict(config, run_dir=config["tagger"])
    if config["audio"]:
        tag_command(config["run_dir"], config["audio"], config["out_dir"])
    if config["similar_to"]:
        similar_command(config["run_dir"], config["similar_to"], config["top_k"], config["out_dir"],
                        config["data_dir"])


def pretrained_tag_command(name, audio, out_dir):
    """``--tagger=mtt --audio=FILE_OR_FOLDER``: tag every audio file into ``out_dir/tags.csv`` (top tags) and
    ``out_dir/tag_scores.csv`` (every tag); return the two paths."""
    paths = audio_paths(audio)
    tagger = pretrained.load(name)
    rows = pretrained_tags.tag_files(tagger, paths)
    os.makedirs(out_dir, exist_ok=True)
    tags_path = write_csv(os.path.join(out_dir, "tags.csv"), pretrained_tags.top_tag_rows(tagger, rows), pretrained_tags.top_tag_columns())
    scores = [{"path": r["path"], **dict(zip(tagger.labels, map(float, r["tags"])))}
              for r in rows if r["tags"] is not None]
    scores_path = write_csv(os.path.join(out_dir, "tag_scores.csv"), scores, ["path", *tagger.labels])
    failed = print_unreadable(rows, lambda r: r["tags"] is not None)
    for row in rows:
        if row["tags"] is not None:
            print(f"{row['path']}: {', '.join(f'{t} {p:.2f}' for t, p in tagger.top_tags(row['tags'], 3))}")
    seconds = sum(r["seconds"] for r in rows)
    print(f"tagged {len(rows) - len(failed)} of {len(rows)} files ({len(failed)} unreadable, {seconds:.0f} s of "
          f"audio) with {tagger.name} -> {tags_path}, {scores_path}")
    return tags_path, scores_path


def pretrained_similar_command(name, similar_to, top_k, out_dir, data_dir):
    """``--tagger=mtt --similar_to=FILE_OR_TRACK_ID --data_dir=FOLDER``: the ``top_k`` dataset tracks nearest to
    it by the pretrained embeddings into ``out_dir/similar.csv``; return its path."""
    similar_to_check(similar_to)
    if not data_dir or not dataset_files.list_parts(data_dir):
        raise StageError(f"data_dir={data_dir!r} holds no processed dataset to search: pass --data_dir=FOLDER")
    tagger = pretrained.load(name)
    table = pretrained_tags.dataset_embeddings(tagger, data_dir)
    def embed_file(path):
        y, reason = pretrained_tags.decode_for_tagging(path)
        return (None, reason) if y is None else (tagger.analyze([y])[0][0].mean(axis=0), "")

    return write_similar(table, similar_to, embed_file, top_k, out_dir, data_dir)
