"""Where stage 4's plans come from (``--plan``): a dataset track, any audio file (its plan: "play this in the
model's voice"), a saved ``.plan.npy``, the held-out tracks (resynthesis), or none for a model without a plan.
Every plan is computed by the one plan function (local.audio.plan.plan_frames) with the renderer's settings.
"""
import dataclasses
import os

import numpy as np

from local.audio.plan import check_plan_array, plan_frames, plan_window
from local.core.config import StageError
from local.store import dataset_files
from local.store.layout import RunDir

KINDS = ("heldout", "track:", "file:", "prior", "none")


@dataclasses.dataclass
class ClipPlans:
    """The plans of a call's clips.

    frames   (clips, F, bands) float32 log-mel dB: what each clip plays (saved as ``<clip>.plan.npy``)
    padded   (clips, F + 2 * plan_width, bands): the renderer's ``plan`` input (edges repeated, or the
             source's own frames beyond the clip)
    sources  one line per clip saying which plan it played (generation.json ``plan_source``)
    genres   the genre of each clip's source ("" when unknown: a file)
    track_ids  the dataset track of each clip's source (None for a file or a drawn plan)
    """
    frames: np.ndarray
    padded: np.ndarray
    sources: list
    genres: list
    track_ids: list


def plan_kind(spec):
    """The kind of a ``--plan`` value (one of :data:`KINDS`), or StageError naming the accepted forms."""
    for kind in KINDS:
        if spec == kind or (kind.endswith(":") and spec.startswith(kind) and len(spec) > len(kind)):
            return kind
    raise StageError(f"--plan={spec!r}: expected heldout, track:<track_id>, file:<audio file or .plan.npy>, prior "
                     f"or none")


def excerpt(track_plan, first_frame, n_frames, width):
    """(frames (n_frames, bands), padded (n_frames + 2 * width, bands)) of a source's plan from ``first_frame``."""
    padded = plan_window(track_plan, first_frame, n_frames, width)
    return padded[width:width + n_frames], padded


def track_plan(row, settings):
    """The plan of one dataset track (index row): (frames, bands) float32."""
    return plan_frames(dataset_files.read_track_codes(row), settings)


def find_track(index, track_id, data_dir):
    """The index row of ``track_id``, or StageError listing a few that exist."""
    matches = [row for row in index if str(row["track_id"]) == track_id]
    if not matches:
        examples = ", ".join(str(row["track_id"]) for row in index[:5])
        raise StageError(f"--plan=track:{track_id}: no such track in {data_dir} (track ids look like: {examples})")
    return matches[0]


def file_plan(path, settings, decode_settings):
    """The plan of an audio file decoded as stage 2 would (``decode_settings``), or of a saved ``.plan.npy``;
    StageError (one line) when it cannot be read."""
    if not os.path.isfile(path):
        raise StageError(f"--plan=file:{path}: no such file")
    if path.lower().endswith(".npy"):
        try:
            frames = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise StageError(f"--plan=file:{path}: not a readable plan ({e})") from None
        return check_plan_array(frames, settings, f"--plan=file:{path}")
    from local.audio.decoding import decode_track
    track, reason = decode_track(path, decode_settings)
    if track is None:
        raise StageError(f"--plan=file:{path}: {reason}")
    codes = track["codes"]  # stage 2's cell: the codes' bytes
    return plan_frames(np.frombuffer(codes, np.uint8) if isinstance(codes, bytes) else codes, settings)


def first_frame_at(offset_seconds, settings, n_plan_frames, n_frames, name):
    """The frame ``--offset`` seconds in, or StageError when the source is shorter than offset + the clip."""
    first = int(round(offset_seconds * settings.frames_per_second))
    if first + n_frames > n_plan_frames:
        have = n_plan_frames / settings.frames_per_second
        raise StageError(f"--offset={offset_seconds:g}: {name} has {have:.1f} s of plan, fewer than --offset plus "
                         f"--seconds: lower them")
    return first


def heldout_plans(index, clip_genres, settings, n_frames, width):
    """Resynthesis plans: clip k of genre g plays an excerpt of g's held-out tracks (test, then valid; never
    train), taking the tracks in turns and, on each further pass, the next clip-length stretch of each track."""
    chosen = {}
    out = []
    for clip_genre in clip_genres:
        rows = [r for split in ("test", "valid") for r in sorted(index, key=lambda r: str(r["track_id"]))
                if r["split"] == split and (r["genre"] == clip_genre or not clip_genre)]
        if not rows:
            raise StageError(f"--plan=heldout: no test or valid track of genre {clip_genre!r} to take plans from: "
                             f"pass --plan=track:<id> or --plan=file:<audio>")
        turn = chosen.get(clip_genre, 0)
        chosen[clip_genre] = turn + 1
        row = rows[turn % len(rows)]
        plan = track_plan(row, settings)
        stretches = max(1, (len(plan) - n_frames) // n_frames + 1)
        first = ((turn // len(rows)) % stretches) * n_frames
        frames, padded = excerpt(plan, first, n_frames, width)
        out.append((frames, padded, f"heldout {row['split']} track {row['track_id']} from "
                    f"{first / settings.frames_per_second:g} s", row["genre"], str(row["track_id"])))
    return out


def clip_plans(spec, *, settings, width, n_samples, clip_genres, index, data_dir, offset=0.0, decode_settings=None):
    """The :class:`ClipPlans` of ``--plan=spec`` (heldout, track:, file:) for clips of ``n_samples`` samples.

    settings: the renderer's PlanSettings; width: its ``plan_width``; clip_genres: each clip's genre (heldout
    takes a track of that genre); index/data_dir: the dataset (heldout, track:); offset: seconds into a
    track: or file: source (rounded to a frame). A track: or file: source plays in every clip.
    """
    kind = plan_kind(spec)
    n_frames = settings.frames_covering(n_samples)
    if kind == "heldout":
        picked = heldout_plans(index, clip_genres, settings, n_frames, width)
    else:
        if kind == "track:":
            row = find_track(index, spec[len("track:"):], data_dir)
            plan, genre, track_id, name = track_plan(row, settings), row["genre"], str(row["track_id"]), spec
        else:
            plan, genre, track_id, name = file_plan(spec[len("file:"):], settings, decode_settings), "", None, spec
        first = first_frame_at(offset, settings, len(plan), n_frames, name)
        frames, padded = excerpt(plan, first, n_frames, width)
        source = f"{spec} from {first / settings.frames_per_second:g} s"
        picked = [(frames, padded, source, genre, track_id)] * len(clip_genres)
    return ClipPlans(np.stack([p[0] for p in picked]), np.stack([p[1] for p in picked]), [p[2] for p in picked],
                     [p[3] for p in picked], [p[4] for p in picked])


def prior_dir_of(config):
    """The prior run stage 4 draws plans from: ``--prior_dir``, else ``<run_dir>/prior`` when that is a prior run
    (make demo's), else ""."""
    if config["prior_dir"]:
        return config["prior_dir"]
    default = RunDir(config["run_dir"]).prior
    return default if os.path.isfile(RunDir(default).model_json) else ""


def check_plan_choice(config, wavenet, run_dir):
    """The ``--plan`` a stage-4 call plays (its default resolved: prior when the run has a prior, else heldout
    for a renderer, none otherwise), or StageError when it does not fit the model: a plan for a model without
    one, none for a renderer, a renderer primed by codes, a prior without a prior run."""
    spec = config["plan"] or ("none" if not wavenet.has_plan else "prior" if prior_dir_of(config) else "heldout")
    kind = plan_kind(spec)
    if not wavenet.has_plan and kind != "none":
        raise StageError(f"--plan={spec}: the model in {run_dir} has no plan (trained without --plan_bands): leave "
                         f"--plan out")
    if wavenet.has_plan and kind == "none":
        raise StageError(f"--plan=none: the model in {run_dir} renders a plan ({wavenet.plan_bands} bands): pass "
                         f"--plan=heldout, track:<track_id> or file:<audio>")
    if wavenet.has_plan and config["prime_track"]:
        raise StageError(f"--prime_track={config['prime_track']}: the model in {run_dir} renders a plan; to play a "
                         f"track's, pass --plan=track:{config['prime_track']}")
    if kind == "prior" and not prior_dir_of(config):
        raise StageError(f"--plan=prior: no prior: pass --prior_dir=<a run of run_model_training.py --model=prior> "
                         f"(or train one into {RunDir(run_dir).prior})")
    if config["prime"] and kind != "prior":
        raise StageError(f"--prime={config['prime']}: primes the prior's plans: use it with --plan=prior")
    if config["prime"] and config["prime"] != "train" and not config["prime"].startswith(("track:", "file:")):
        raise StageError(f"--prime={config['prime']!r}: expected track:<track_id>, file:<audio file> or train")
    if config["offset"] < 0:
        raise StageError(f"--offset={config['offset']}: must be >= 0")
    return spec


def prior_plans(prior_run, *, prior_dir, settings, width, n_samples, clip_genres, temperature, seed, prime=None,
                prime_source=""):
    """The :class:`ClipPlans` the prior draws (local.generate.plan_sampling.sample_plans), one per clip of
    ``n_samples`` samples in its genre; ``prime`` (P, bands): every clip's plan opens with these real frames.
    StageError (one line) when the prior's plan keys are not the renderer's or a genre is not the prior's."""
    from local.generate import plan_sampling
    problem = plan_sampling.plan_mismatch(prior_run, settings, prior_dir)
    if problem:
        raise StageError(problem)
    prior_genres = list(prior_run.info.get("genres", []))
    unknown = sorted({g for g in clip_genres if g not in prior_genres})
    if unknown:
        raise StageError(f"--prior_dir={prior_dir} was trained on {', '.join(prior_genres)}, not on "
                         f"{', '.join(unknown)}: train the prior on the renderer's dataset")
    n_frames = settings.frames_covering(n_samples)
    frames = plan_sampling.sample_plans(prior_run, [prior_genres.index(g) for g in clip_genres], n_frames,
                                        temperature=temperature, seed=seed, prime=prime)
    padded = np.stack([plan_window(f, 0, n_frames, width) for f in frames])
    primed = f", primed by {prime_source} ({np.asarray(prime).shape[-2]} frames)" if prime is not None else ""
    sources = [f"prior {prior_dir} at temperature {temperature:g}, seed {seed}{primed}"] * len(clip_genres)
    return ClipPlans(frames, padded, sources, list(clip_genres), [None] * len(clip_genres))


def train_primes(index, clip_genres, settings, *, offset, seconds):
    """``--prime=train``: each clip's opening, ``seconds`` of plan from ``offset`` s into a train track of its
    genre (the genre's tracks in turns): (clips, P, bands) float32. StageError when a genre has no train track
    that long."""
    n = max(1, int(round(seconds * settings.frames_per_second)))
    first = int(round(offset * settings.frames_per_second))
    turns, out = {}, []
    for genre in clip_genres:
        rows = [r for r in sorted(index, key=lambda r: str(r["track_id"])) if r["split"] == "train"
                and r["genre"] == genre and settings.n_frames(r["n_samples"]) >= first + n]
        if not rows:
            raise StageError(f"--prime=train: no train track of genre {genre!r} is longer than --offset plus "
                             f"--prime_seconds ({(first + n) / settings.frames_per_second:.1f} s): lower them")
        turn = turns.get(genre, 0)
        turns[genre] = turn + 1
        out.append(track_plan(rows[turn % len(rows)], settings)[first:first + n])
    return np.stack(out)


def prime_frames(spec, *, settings, index, data_dir, offset, seconds, decode_settings):
    """The first ``seconds`` of plan frames of ``--prime`` (track:<id> or file:<audio>) from ``offset`` s."""
    if spec.startswith("track:"):
        plan = track_plan(find_track(index, spec[len("track:"):], data_dir), settings)
    else:
        plan = file_plan(spec[len("file:"):], settings, decode_settings)
    n = max(1, int(round(seconds * settings.frames_per_second)))
    first = first_frame_at(offset, settings, len(plan), n, f"--prime={spec}")
    return plan[first:first + n]


def real_excerpts(index, genres, settings, n_samples):
    """A real excerpt per genre to show beside the prior's plans: the first ``n_samples`` codes of the genre's
    first held-out track (test, then valid) and their plan. A list of {"genre", "codes" (n,), "frames" (F,
    bands), "source"}; a genre without a held-out track long enough is left out."""
    out = []
    for genre in dict.fromkeys(genres):
        rows = [r for split in ("test", "valid") for r in sorted(index, key=lambda r: str(r["track_id"]))
                if r["split"] == split and r["genre"] == genre and int(r["n_samples"]) >= n_samples]
        if rows:
            codes = dataset_files.read_track_codes(rows[0], 0, n_samples)
            frames = plan_frames(codes, settings)[:settings.frames_covering(n_samples)]
            out.append({"genre": genre, "codes": codes, "frames": frames,
                        "source": f"{rows[0]['split']} track {rows[0]['track_id']} from 0 s"})
    return out
