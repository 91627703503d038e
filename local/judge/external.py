"""An independent ear for generated clips: a tagger pretrained on real music (local/judge/pretrained.py), not the
project's own tagger trained on the WaveNet's tracks.

:class:`ExternalJudge` compares clips with real excerpts of the WaveNet's dataset (the same excerpts the
project's judge uses: :func:`local.judge.excerpts.pick_excerpts`), through ``MTT_musicnn`` by default:

- ``external_frechet_distance``: the Frechet distance between the clips' and the real reference excerpts'
  penultimate-layer embeddings (one per 3 s patch; a shorter clip is repeat-padded to one patch), and
  ``external_frechet_floor``: the same distance for a disjoint set of real excerpts as many as the clips
  ("as good as real"), or, with too few held-out excerpts for that, for a floor set of the excerpts that exist or
  of their halves (:func:`local.judge.figures.floor_sets`; ``external_frechet_floor_method``,
  ``n_external_floor_excerpts``, and ``external_frechet_distance_at_floor_size``: the clips' distance at the
  floor set's size);
- ``external_tag_similarity``: the cosine similarity between the clips' mean tag vector and the real reference
  excerpts' (``external_tag_similarity_floor``: the same for the real floor set), and
  ``external_tag_similarity_matrix`` ({asked genre: {real genre: similarity}}) and
  ``external_genres_closest_to_their_own`` (the share of asked genres whose clips' tags are closest to the real
  excerpts of their own genre), and
  ``external_tag_similarity_per_genre``: per asked genre, the clips of that genre against the real excerpts
  (reference and floor) of that genre;
- per clip ``external_top_tags`` ("beat 0.69, techno 0.59, drums 0.42": shown on the report page) and
  ``external_tags`` (the same as a dict tag -> probability).

:class:`Judges` runs the project's judge (when there is a tagger run) and this one on the same clips and merges
their verdicts; :func:`wavenet_judges` builds it for ``--judge``.
"""
import os

import numpy as np

from local.audio.waveform import mu_law_decode
from local.core.config import StageError
from local.judge import excerpts as judge_excerpts
from local.judge import figures, pretrained, tagging
from local.judge import verdict as judge_verdict
from local.store import dataset_files

EXTERNAL_MODEL = "mtt"  # the pretrained tagger of the external ear (MTT_musicnn)
TOP_TAGS = 3  # tags listed per clip


def mean_cosine(a, b):
    """Cosine similarity of the mean rows of two sets of tag vectors (n, 50) and (m, 50); None if one is empty."""
    if not len(a) or not len(b):
        return None
    return float(figures.cosine_similarities(np.mean(a, axis=0), np.mean(b, axis=0)[None])[0])


def top_tags_text(tags):
    """[(tag, probability), ...] as "tag 0.69, tag 0.59" for a person."""
    return ", ".join(f"{tag} {p:.2f}" for tag, p in tags)


class ExternalJudge:
    """Judges clips with a pretrained tagger against a dataset's held-out tracks (the WaveNet's dataset).

    Loads once: the pretrained tagger (once per process) and, per clip length and asked genres, the real
    excerpts' patch embeddings and tag vectors; so :meth:`judge` called again costs the clips only.
    StageError (one line) when ``data_dir`` holds no dataset or the pretrained tagger is not installed.
    """

    def __init__(self, data_dir, model=EXTERNAL_MODEL):
        if not data_dir or not dataset_files.list_parts(data_dir):
            raise StageError(f"data_dir={data_dir!r} holds no processed dataset, needed to judge clips against "
                             f"real excerpts: pass --data_dir=FOLDER")
        info = dataset_files.read_dataset_json(data_dir) or {}
        self.data_dir = data_dir
        self.sample_rate = int(info.get("sample_rate", 16000))
        self.quantization_channels = int(info.get("quantization_channels", 256))
        self.tagger = pretrained.load(model)
        self._real = {}

    def analyze_codes(self, code_arrays):
        """(patch embeddings (k, D), patch tag probabilities (k, 50)) of each code array of the dataset's rate."""
        return self.tagger.analyze([mu_law_decode(c, self.quantization_channels) for c in code_arrays],
                                   sample_rate=self.sample_rate)

    def real_side(self, n_samples, asked_genres):
        """The real excerpts' patch embeddings and mean tag vectors (memoized per length and genres): a dict of
        ``reference`` and ``floor`` (lists of (k, D) arrays), ``reference_tags`` and ``floor_tags`` ((n, 50)),
        ``reference_genres``, ``floor_genres`` and ``splits``."""
        key = (int(n_samples), tuple(asked_genres))
        if key not in self._real:
            picked = judge_excerpts.pick_excerpts(self.data_dir, n_samples, asked_genres)
            analyzed = self.analyze_codes(picked["reference"] + picked["floor"])
            n_reference = len(picked["reference"])
            tags = np.asarray([p.mean(axis=0) for _, p in analyzed]).reshape(len(analyzed), len(self.tagger.labels))
            self._real[key] = {"reference": [e for e, _ in analyzed[:n_reference]],
                               "floor": [e for e, _ in analyzed[n_reference:]],
                               "reference_tags": tags[:n_reference], "floor_tags": tags[n_reference:],
                               "reference_genres": list(picked["reference_genres"]),
                               "floor_genres": list(picked["floor_genres"]), "splits": picked["splits"]}
        return self._real[key]

    def judge(self, clips, asked_genres):
        """Judge generated clips: (per-clip dicts with external_top_tags, external_tags; summary dict with
        external_frechet_distance, external_frechet_floor (+ _method, n_external_floor_excerpts,
        external_frechet_distance_at_floor_size: :func:`local.judge.figures.floor_sets`), external_tag_similarity
        (+ _floor, _per_genre), external_model, external_embedding_size, n_external_reference_excerpts).

        clips         WAV paths, float waveforms (n,) in [-1, 1] at the dataset's sample rate, or code arrays (n,)
                      int of its quantization (as local.judge.verdict.Judge.judge takes them); cut to the shortest
        asked_genres  the genre each clip was asked for ("" = none)
        """
        codes, n_samples = judge_excerpts.clips_as_codes(clips, self.sample_rate, self.quantization_channels)
        real = self.real_side(n_samples, list(asked_genres))
        analyzed = self.analyze_codes(codes)
        clip_tags = np.asarray([p.mean(axis=0) for _, p in analyzed])
        per_clip = []
        for tags in clip_tags:
            top = self.tagger.top_tags(tags, TOP_TAGS)
            per_clip.append({"external_top_tags": top_tags_text(top), "external_tags": dict(top)})
        clip_embeddings = np.concatenate([e for e, _ in analyzed])

        per_genre = {}  # against every real excerpt of the genre (reference and floor: a few clips may use all)
        real_tags = np.concatenate([real["reference_tags"], real["floor_tags"]])
        real_genres = np.asarray(real["reference_genres"] + real["floor_genres"])
        matrix = {}  # clips of a genre against the real excerpts of every genre: is its own the closest?
        for genre, clips in figures.genre_groups(asked_genres).items():
            similarity = mean_cosine(clip_tags[clips], real_tags[real_genres == genre])
            if similarity is not None:
                per_genre[genre] = similarity
            row = {other: mean_cosine(clip_tags[clips], real_tags[real_genres == other])
                   for other in sorted(set(real_genres.tolist()))}
            matrix[genre] = {other: value for other, value in row.items() if value is not None}
        own_closest = [max(row, key=row.get) == genre for genre, row in matrix.items() if genre in row]
        clip_windows = [e for e, _ in analyzed]
        reference, floor, floor_method = figures.floor_sets(real["reference"], real["floor"], len(codes))
        summary = {"external_frechet_distance": figures.set_distance(clip_embeddings, clip_windows, reference),
                   "external_frechet_floor": figures.set_distance(clip_embeddings, floor, reference),
                   "external_frechet_floor_method": floor_method, "n_external_floor_excerpts": len(floor),
                   "external_frechet_distance_at_floor_size": None if floor_method == "disjoint" else
                   figures.matched_distance(clip_windows, len(floor), reference, halves=floor_method == "halves"),
                   "external_tag_similarity": mean_cosine(clip_tags, real["reference_tags"]),
                   "external_tag_similarity_floor": mean_cosine(real["floor_tags"], real["reference_tags"]),
                   "external_tag_similarity_per_genre": per_genre,
                   "external_tag_similarity_matrix": matrix,
                   "external_genres_closest_to_their_own": float(np.mean(own_closest)) if own_closest else None,
                   "external_model": self.tagger.name, "external_embedding_size": self.tagger.embedding_size,
                   "n_external_reference_excerpts": len(reference)}
        return per_clip, summary


class Judges:
    """The project's judge (a :class:`local.judge.verdict.Judge`, or None for ``--judge=mtt``) and the external ear
    (:class:`ExternalJudge`) on the same clips: :meth:`judge` has local.judge.verdict.Judge.judge's signature and
    returns both verdicts merged (per clip and in the summary)."""

    def __init__(self, judge, external):
        self.project, self.external = judge, external

    def judge(self, clips, asked_genres):
        asked_genres = list(asked_genres)
        if self.project is not None:
            per_clip, summary = self.project.judge(clips, asked_genres)
        else:
            per_clip = [{"asked_genre": g} for g in asked_genres]
            summary = {"n_clips": len(per_clip), "data_dir": str(self.external.data_dir)}
        external_clips, external_summary = self.external.judge(clips, asked_genres)
        for verdict, extra in zip(per_clip, external_clips):
            verdict.update(extra)
        summary.update(external_summary)
        return per_clip, summary


def wavenet_judges(judge, *, genres, sample_rate, wavenet_run, data_dir):
    """The :class:`Judges` for ``--judge``: a tagger run (the project's judge and the external ear) or a
    pretrained tagger's name (``mtt``: the external ear alone, no trained tagger needed). StageError (one
    line) when it cannot judge this WaveNet's clips."""
    if pretrained.is_pretrained(judge):
        info = (dataset_files.read_dataset_json(data_dir) or {}) if data_dir else {}
        if info and int(info.get("sample_rate", sample_rate)) != int(sample_rate):
            raise StageError(f"--judge={judge}: the dataset {data_dir} is at {info['sample_rate']} Hz, the WaveNet "
                             f"{wavenet_run} at {sample_rate} Hz: pass the --data_dir it was trained on")
        return Judges(None, ExternalJudge(data_dir, judge))
    if not os.path.isdir(judge):
        raise StageError(f"--judge={judge}: neither a tagger run directory nor a pretrained tagger "
                         f"({', '.join(pretrained.MODELS)})")
    tagger = tagging.Tagger(judge)
    problem = tagging.mismatch(tagger.info, genres, sample_rate, judge, wavenet_run)
    if problem:
        raise StageError(problem)
    return Judges(judge_verdict.Judge(tagger, data_dir, progress=True), ExternalJudge(data_dir))
