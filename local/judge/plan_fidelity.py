"""Plan fidelity: does a rendered clip play the plan it was given? The distance between that plan and the plan
of the clip it made (re-analysed by the one plan function), next to the distance between the plans of two real
excerpts of the same genre from different tracks (what "another piece of that genre" measures): a renderer
that follows its plan sits well under the genre-mate distance; one that only hears the genre sits near it.
"""
import numpy as np

from local.audio.plan import plan_distance_db, plan_frames


def plan_fidelity(given, codes, settings, genres, track_ids):
    """Fidelity figures of rendered clips.

    given      (clips, F, bands) the plans the clips played, log-mel dB
    codes      (clips, n) the generated codes
    settings   the renderer's PlanSettings
    genres, track_ids   each clip's source genre and track (None: not a dataset track)
    Returns {"plan_distance_db" (mean over clips), "genre_mate_distance_db" (mean over clips that have a
    genre mate from another track, else None), "plan_distance_ratio" (their ratio or None), "per_clip" (list
    of distances), "per_genre" ({genre: {plan_distance_db, genre_mate_distance_db}})}.
    """
    given = np.asarray(given, np.float32)
    made = [plan_frames(c, settings)[:given.shape[1]] for c in codes]
    distances = [plan_distance_db(g, m) for g, m in zip(given, made)]
    mates = []
    for k in range(len(given)):
        others = [plan_distance_db(given[k], given[j]) for j in range(len(given))
                  if j != k and genres[j] == genres[k] and track_ids[j] is not None and track_ids[k] is not None
                  and track_ids[j] != track_ids[k]]
        mates.append(float(np.mean(others)) if others else None)
    per_genre = {}
    for genre in dict.fromkeys(genres):
        mine = [k for k, g in enumerate(genres) if g == genre]
        mate = [mates[k] for k in mine if mates[k] is not None]
        per_genre[genre or "-"] = {"plan_distance_db": float(np.mean([distances[k] for k in mine])),
                                   "genre_mate_distance_db": float(np.mean(mate)) if mate else None}
    known = [m for m in mates if m is not None]
    mean_mate = float(np.mean(known)) if known else None
    mean = float(np.mean(distances)) if distances else None
    return {"plan_distance_db": mean, "genre_mate_distance_db": mean_mate,
            "plan_distance_ratio": mean / mean_mate if mean is not None and mean_mate else None,
            "per_clip": distances, "per_genre": per_genre}


def fidelity_line(figures):
    """One printed line of :func:`plan_fidelity`'s figures."""
    mate = figures["genre_mate_distance_db"]
    ratio = figures["plan_distance_ratio"]
    return (f"plan fidelity: clips {figures['plan_distance_db']:.1f} dB from the plan they played"
            + (f", genre mates {mate:.1f} dB apart (ratio {ratio:.2f}, goal <= 0.5)" if mate else ""))


def excerpt_windows(plan, n_frames, stride):
    """Every ``n_frames``-long excerpt of ``plan`` (T, bands) starting at multiples of ``stride``:
    (k, n_frames * bands) float32 (none for a plan shorter than an excerpt)."""
    plan = np.asarray(plan, np.float32)
    if len(plan) < n_frames:
        return np.zeros((0, n_frames * plan.shape[1]), np.float32)
    starts = np.arange(0, len(plan) - n_frames + 1, stride)
    return np.stack([plan[s:s + n_frames].reshape(-1) for s in starts])


def nearest_distances_db(plans, excerpts):
    """Each plan's RMS dB distance (as :func:`local.audio.plan.plan_distance_db`) to its nearest excerpt:
    plans (n, F, bands), excerpts (k, F * bands) -> (n,) float64."""
    a = np.asarray(plans, np.float64).reshape(len(plans), -1)
    b = np.asarray(excerpts, np.float64)
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0) / a.shape[1])


def plan_memorization(generated, heldout, train_plans, stride=8):
    """Does the prior copy its training plans? Each generated plan's distance to its nearest training-plan excerpt
    over the same for held-out real plans (excerpts of the training tracks' plans every ``stride`` frames).

    generated (n, F, bands), heldout (m, F, bands) real plans of held-out tracks, train_plans: a list of (T, bands).
    Returns {"generated_nearest_train_db", "heldout_nearest_train_db" (means), "plan_memorization_ratio" (their
    ratio: well under 1 = the prior copies; about 1 = as new as unseen music), "n_train_excerpts"}.
    """
    n_frames = np.asarray(generated).shape[1]
    excerpts = np.concatenate([excerpt_windows(p, n_frames, stride) for p in train_plans])
    if not len(excerpts) or not len(heldout):
        return {"generated_nearest_train_db": None, "heldout_nearest_train_db": None,
                "plan_memorization_ratio": None, "n_train_excerpts": int(len(excerpts))}
    made, real = nearest_distances_db(generated, excerpts).mean(), nearest_distances_db(heldout, excerpts).mean()
    return {"generated_nearest_train_db": float(made), "heldout_nearest_train_db": float(real),
            "plan_memorization_ratio": float(made / real) if real > 0 else None,
            "n_train_excerpts": int(len(excerpts))}


def memorization_line(figures):
    """One printed line of :func:`plan_memorization`'s figures."""
    ratio = figures["plan_memorization_ratio"]
    return (f"plan memorization: generated plans {figures['generated_nearest_train_db']:.1f} dB from their nearest "
            f"training excerpt, held-out real plans {figures['heldout_nearest_train_db']:.1f} dB (ratio "
            f"{'-' if ratio is None else format(ratio, '.2f')}, goal >= 0.8; well under 1 = copying)")
