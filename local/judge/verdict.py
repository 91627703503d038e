"""Use a trained genre tagger (local/model/tagger.py): tag audio files, find similar tracks, judge generated clips.

- Tagging: every audio file of a file or folder is decoded exactly as stage 2 decodes it
  (:func:`local.audio.decoding.decode_track` with the settings the tagger's dataset was made with), and gets
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
import os

import numpy as np

from local.audio.waveform import mu_law_decode
from local.core.config import StageError
from local.judge.excerpts import clips_as_codes, pick_excerpts
from local.judge.figures import (bootstrap_ratio_interval, genre_groups, onset_rate, onset_rates_by_genre,
                                 set_distance, spectral_flatness, wilson_interval, with_interval)
from local.judge.tagging import Tagger, dataset_embeddings, nearest
from local.store import dataset_files
from local.store.layout import RunDir


class Judge:
    """Judges generated clips with a tagger against a dataset's held-out tracks (the WaveNet's dataset).

    Loads once: the tagger (``tagger_run``, or a loaded :class:`Tagger`), the dataset's track embeddings
    (:func:`dataset_embeddings`, on first use) and, per clip length and asked genres, the real excerpts'
    embeddings and flatness; so :meth:`judge` called again (every N training steps) costs the clips only.
    StageError (one line) when the tagger run or ``data_dir`` cannot be used.
    """

    def __init__(self, tagger_run, data_dir, *, progress=False):
        self.tagger = tagger_run if isinstance(tagger_run, Tagger) else Tagger(tagger_run)
        if not data_dir or not dataset_files.list_parts(data_dir):
            raise StageError(f"data_dir={data_dir!r} holds no processed dataset, needed to judge clips against "
                             f"real excerpts: pass --data_dir=FOLDER")
        from local.core.checks import evaluation_dataset_problem
        problem = evaluation_dataset_problem(self.tagger.sample_rate, dataset_files.read_dataset_json(data_dir),
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
        n_real_excerpts. With their 95% intervals, in the summary and per genre: genre_accuracy_interval (Wilson),
        flatness_ratio_interval and onset_rate_ratio_interval (seeded bootstrap over the clips); per genre also
        n_judged_clips, real_flatness and flatness_ratio (against that genre's real excerpts).
        """
        tagger, n_codes = self.tagger, self.tagger.quantization_channels
        codes, n_samples = clips_as_codes(clips, tagger.sample_rate, n_codes)
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

        clip_flatness = float(np.mean([c["spectral_flatness"] for c in per_clip]))
        onsets, per_genre = onset_rates_by_genre([c["onset_rate"] for c in per_clip], list(asked_genres),
                                                 real["onset_rates"], real["genres"])
        groups = genre_groups(asked_genres)
        for genre, figures in per_genre.items():
            mine = [per_clip[i] for i in groups[genre]]
            figures["genre_accuracy"] = float(np.mean([c["top_genre"] == genre for c in mine])) \
                if genre in tagger.genres else None
            figures["clip_flatness"] = float(np.mean([c["spectral_flatness"] for c in mine]))
            figures.update(accuracy_figures(mine, genre in tagger.genres))
            figures.update(flatness_figures(mine, real_flatness_of(real, genre)))
        summary = {"genre_accuracy": float(np.mean([c["top_genre"] == c["asked_genre"] for c in asked]))
                   if asked else None,
                   "flatness_ratio": clip_flatness / real_flatness if real_flatness else None,
                   "frechet_distance": set_distance(clip_windows, [e for e, _ in analyzed], real["reference"]),
                   "frechet_distance_floor": set_distance(clip_windows, real["floor"], real["reference"])
                   if len(real["floor"]) == len(codes) else None,
                   "onset_rate_ratio": onsets["onset_rate_ratio"],
                   "n_clips": len(per_clip), "clip_flatness": clip_flatness, "real_flatness": real_flatness,
                   "clip_onset_rate": onsets["clip_onset_rate"], "real_onset_rate": onsets["real_onset_rate"],
                   "n_reference_excerpts": len(real["reference"]), "n_floor_excerpts": len(real["floor"]),
                   "excerpt_seconds": n_samples / tagger.sample_rate, "excerpt_splits": real["splits"],
                   "tagger_run": tagger.run_dir, "data_dir": str(self.data_dir), "per_genre": per_genre}
        summary["genre_accuracy_interval"] = accuracy_figures(asked, bool(asked))["genre_accuracy_interval"]
        summary["flatness_ratio_interval"] = flatness_figures(per_clip, real_flatness)["flatness_ratio_interval"]
        summary["onset_rate_ratio_interval"] = onsets["onset_rate_ratio_interval"]
        return per_clip, summary


def accuracy_figures(clips, judged):
    """``genre_accuracy_interval`` (95% Wilson, :func:`wilson_interval`) and ``n_judged_clips`` of clips'
    verdicts (dicts with top_genre, asked_genre); the interval is None when ``judged`` is false (the genre is not
    the tagger's) or there are no clips."""
    hits = sum(c["top_genre"] == c["asked_genre"] for c in clips)
    return {"genre_accuracy_interval": wilson_interval(hits, len(clips)) if judged else None,
            "n_judged_clips": len(clips) if judged else 0}


def real_flatness_of(real, genre):
    """The mean flatness of the real excerpts of ``genre`` in a :meth:`Judge.real_side` dict (all of them when the
    genre has none); None without real excerpts."""
    mine = [f for f, g in zip(real["flatness"], real["genres"]) if g == genre] or real["flatness"]
    return float(np.mean(mine)) if mine else None


def flatness_figures(clips, real_flatness):
    """``real_flatness``, ``flatness_ratio`` (the clips' mean flatness over ``real_flatness``) and
    ``flatness_ratio_interval`` (a bootstrap over the clips, :func:`bootstrap_ratio_interval`) of clips' verdicts."""
    flatness = [c["spectral_flatness"] for c in clips]
    if not flatness or not real_flatness:
        return {"real_flatness": real_flatness, "flatness_ratio": None, "flatness_ratio_interval": None}
    return {"real_flatness": real_flatness, "flatness_ratio": float(np.mean(flatness)) / real_flatness,
            "flatness_ratio_interval": bootstrap_ratio_interval(flatness, [real_flatness] * len(flatness))}


_JUDGES = {}  # (tagger run, model.keras mtime, data_dir) -> Judge: judge_clips loads each once per process


def judge_clips(clips, asked_genres, tagger_run, data_dir):
    """Judge generated clips (WAV paths, waveforms or codes; see :meth:`Judge.judge`) with the tagger in
    ``tagger_run`` against ``data_dir``'s held-out tracks: (per-clip dicts, summary dict with genre_accuracy,
    flatness_ratio, frechet_distance, frechet_distance_floor, n_clips). The Judge is kept between calls (a
    retrained tagger is reloaded), so calling it at every sampling step of a training run is cheap."""
    model_path = RunDir(tagger_run).model_keras
    key = (os.path.abspath(tagger_run), os.path.getmtime(model_path) if os.path.isfile(model_path) else None,
           os.path.abspath(data_dir))
    if key not in _JUDGES:
        _JUDGES[key] = Judge(tagger_run, data_dir)
    return _JUDGES[key].judge(clips, asked_genres)


def summary_line(summary):
    """The judge summary in one line for a person: the project's tagger's figures and/or the external ear's
    (local/judge/external.py)."""
    def show(value, spec):
        return "-" if value is None else format(value, spec)
    parts = []
    if "genre_accuracy" in summary:
        parts.append(f"genre accuracy {with_interval(summary['genre_accuracy'], summary.get('genre_accuracy_interval'))}"
                     f", flatness ratio {with_interval(summary['flatness_ratio'], summary.get('flatness_ratio_interval'))}"
                     f" (real = 1), onset rate ratio "
                     f"{with_interval(summary.get('onset_rate_ratio'), summary.get('onset_rate_ratio_interval'))}"
                     f" (real = 1; 95% intervals), Frechet distance "
                     f"{show(summary['frechet_distance'], '.3g')} (real vs real "
                     f"{show(summary['frechet_distance_floor'], '.3g')})")
    if "external_frechet_distance" in summary:
        parts.append(f"external ({summary['external_model']}): Frechet distance "
                     f"{show(summary['external_frechet_distance'], '.3g')} (real vs real "
                     f"{show(summary['external_frechet_floor'], '.3g')}{floor_note(summary)}), tag similarity "
                     f"{show(summary['external_tag_similarity'], '.2f')} (real "
                     f"{show(summary['external_tag_similarity_floor'], '.2f')})")
    return f"judge: {'; '.join(parts)} over {summary['n_clips']} clips"


def per_genre_line(per_genre):
    """The judge's figures per genre in one line for a person: accuracy and onset rate ratio."""
    def show(value, spec):
        return "-" if value is None else format(value, spec)
    return "per genre: " + "; ".join(
        f"{genre} accuracy {with_interval(f.get('genre_accuracy'), f.get('genre_accuracy_interval'))}, flatness "
        f"ratio {with_interval(f.get('flatness_ratio'), f.get('flatness_ratio_interval'))}, onset rate ratio "
        f"{with_interval(f.get('onset_rate_ratio'), f.get('onset_rate_ratio_interval'))} "
        f"({show(f.get('clip_onset_rate'), '.1f')} vs "
        f"{show(f.get('real_onset_rate'), '.1f')} onsets/s)" for genre, f in per_genre.items())


def floor_note(summary):
    """How the external ear's floor was formed, when not from one disjoint real excerpt per clip: ", 3 excerpts,
    split; 0.5 at that size" (``external_frechet_floor_method``, local.judge.figures.floor_sets)."""
    method = summary.get("external_frechet_floor_method", "disjoint")
    if method == "disjoint":
        return ""
    at_size = summary.get("external_frechet_distance_at_floor_size")
    return (f", {summary.get('n_external_floor_excerpts')} excerpts, {method}"
            + (f"; clips {at_size:.3g} at that size" if at_size is not None else ""))


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


def judge_generation(judge, clips, codes, quantization_channels):
    """After generating: add ``judge`` to each clip dict of generation.json (in place); return the
    ``judge_summary`` dict (its ``per_genre`` dict goes to generation.json as ``judge_per_genre``).
    codes: the generated codes, one (n,) array per clip (the prime left out)."""
    per_clip, summary = judge.judge([mu_law_decode(c, quantization_channels) for c in codes],
                                    [c["genre"] for c in clips])
    for clip, verdict in zip(clips, per_clip):
        clip["judge"] = verdict
    return summary
