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
