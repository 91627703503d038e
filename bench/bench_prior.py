"""Benchmark the plan prior's sampling: its speed, and how free-running plans compare with real ones (the
effect of training with input noise against exposure bias: run it on two priors trained with and without).

Run:
  .venv/bin/python bench/bench_prior.py --prior_dir=data/demo/prior --data_dir=data/demo/processed
  .venv/bin/python bench/bench_prior.py --prior_dir=RUN --data_dir=D --streams=30 --frames=250 --temperature=1

Draws ``streams`` plans of ``frames`` frames (the genres in turn) from scratch, timed, and compares each genre's
plans with the valid and test tracks' plans (plan_frames) of that genre by three statistics: the mean level (dB),
the share of values at the floor, and the flux (mean |frame - previous frame|, dB). A prior that drifts when it
reads its own frames shows it as levels and flux far from the real ones, most in the last frames.
Prints one JSON line: seconds, frames_per_second, per genre the statistics (generated / real), and the mean
absolute error of each statistic over the genres (first and last quarter of the frames for the level).
"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.core.config import configure

prior_dir = "data/demo/prior"  # a prior run (run_model_training.py --model=prior)
data_dir = "data/demo/processed"  # its dataset: the real plans are its valid and test tracks'
streams = 30  # plans drawn side by side
frames = 250  # frames of each (4 s at 62.5 frames/s)
temperature = 1.0  # sampling temperature
seed = 0

# -----------------------------------------------------------------------------


def statistics(plans):
    """{level, floor, flux} of a list of plans (F, bands) dB, and the level of their first and last quarters."""
    from local.model.prior import FLOOR_DB
    q = max(1, min(len(p) for p in plans) // 4)
    return {"level": float(np.mean([p.mean() for p in plans])),
            "floor": float(np.mean([(p <= FLOOR_DB + 0.25).mean() for p in plans])),
            "flux": float(np.mean([np.abs(np.diff(p, axis=0)).mean() for p in plans])),
            "level_first": float(np.mean([p[:q].mean() for p in plans])),
            "level_last": float(np.mean([p[-q:].mean() for p in plans]))}


def main(argv=None):
    config = configure(dict((k, v) for k, v in globals().items() if k in (
        "prior_dir", "data_dir", "streams", "frames", "temperature", "seed")), argv)
    from local.generate import plan_sampling
    from local.store import dataset_files
    from local.train.prior_task import track_plans
    run = plan_sampling.load_prior(config["prior_dir"])
    genres = run.info["genres"]
    genre_ids = np.arange(config["streams"]) % len(genres)
    plan_sampling.sample_plans(run, genre_ids[:2], 4)  # warm the weights' first read
    started = time.perf_counter()
    plans = plan_sampling.sample_plans(run, genre_ids, config["frames"], temperature=config["temperature"],
                                       seed=config["seed"])
    seconds = time.perf_counter() - started
    rows = [r for r in dataset_files.read_index(config["data_dir"]) if r["split"] in ("valid", "test")
            and r["genre"] in genres]
    real = track_plans(rows, run.plan)
    result = {"prior_dir": config["prior_dir"], "input_noise_db": run.config.input_noise,
              "temperature": config["temperature"], "streams": int(config["streams"]), "frames": int(config["frames"]),
              "seconds": round(seconds, 3), "frames_per_second": round(plans.shape[0] * plans.shape[1] / seconds, 1),
              "per_genre": {}}
    errors = {}
    for g, name in enumerate(genres):
        mine = statistics(list(plans[genre_ids == g]))
        theirs = statistics([p[:config["frames"]] for genre_id, p in real if genre_id == g] or [np.zeros((1, 1))])
        result["per_genre"][name] = {k: [round(mine[k], 2), round(theirs[k], 2)] for k in mine}
        for k in mine:
            errors.setdefault(k, []).append(abs(mine[k] - theirs[k]))
    result["mean_abs_error"] = {k: round(float(np.mean(v)), 3) for k, v in errors.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
