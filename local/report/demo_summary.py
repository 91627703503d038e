"""The summary lines ``make demo`` ends with: its free clips (the prior's plans, rendered), its resynthesis
(held-out plans, rendered), the external ear on both and the models' own test figures, each beside its goal.

Run: ``python -m local.report.demo_summary data/demo`` (reads ``generated/``, ``resynthesized/``, ``run/`` and
``run/prior/`` there; a part that is missing is left out).
"""
import json
import os
import sys

from local.judge.figures import with_interval
from local.store.layout import RunDir


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _number(value, spec=".3g"):
    return "-" if value is None else format(value, spec)


def judge_line(title, generation, goals):
    """One line of a generation.json's own-tagger figures with their 95% intervals, beside ``goals``."""
    s = generation.get("judge_summary") or {}
    def shown(figures, key):
        return with_interval(figures.get(key), figures.get(f"{key}_interval"))

    per_genre = ", ".join(f"{genre} {shown(v, 'onset_rate_ratio')}"
                          for genre, v in (generation.get("judge_per_genre") or {}).items())
    return (f"demo summary, {title}: genre accuracy {shown(s, 'genre_accuracy')} ({goals['accuracy']}), flatness "
            f"ratio {shown(s, 'flatness_ratio')} ({goals['flatness']}), onset rate "
            f"ratio {per_genre} (goal 0.67-1.5 each) over {s.get('n_clips', '-')} clips of "
            f"{_number(s.get('excerpt_seconds'), '.1f')} s (95% intervals)")


def external_line(title, generation):
    """One line of the external ear's figures of a generation.json, against its floor (real against real)."""
    s = generation.get("judge_summary") or {}
    distance, floor = s.get("external_frechet_distance"), s.get("external_frechet_floor")
    ratio = f", {distance / floor:.2f}x the floor" if distance is not None and floor else ""
    return (f"demo summary, {title}, external ear ({s.get('external_model', '-')}, pretrained on MagnaTagATune): "
            f"Frechet distance {_number(distance)}{ratio} (floor {_number(floor)} of "
            f"{s.get('n_external_floor_excerpts', '-')} real excerpts, {s.get('external_frechet_floor_method', '-')}; "
            f"at the floor's size {_number(s.get('external_frechet_distance_at_floor_size'))}), tag similarity "
            f"{_number(s.get('external_tag_similarity'), '.2f')} (real vs real "
            f"{_number(s.get('external_tag_similarity_floor'), '.2f')}), genres whose clips' tags are closest to "
            f"their own genre's real ones: {_number(s.get('external_genres_closest_to_their_own'), '.2f')}")


def plan_line(generation, prior_evaluation):
    """The plan figures: fidelity (resynthesis) or memorization and the prior's test NLL (free clips)."""
    parts = []
    fidelity = generation.get("plan_fidelity")
    if fidelity and generation.get("generation") == "resynthesis":
        parts.append(f"plan distance {_number(fidelity.get('plan_distance_db'), '.1f')} dB vs genre mates "
                     f"{_number(fidelity.get('genre_mate_distance_db'), '.1f')} dB (ratio "
                     f"{_number(fidelity.get('plan_distance_ratio'), '.2f')}, goal <= 0.5)")
    memory = generation.get("plan_memorization")
    if memory:
        parts.append(f"plan memorization ratio {_number(memory.get('plan_memorization_ratio'), '.2f')} (goal >= 0.8)")
    if prior_evaluation:
        parts.append(f"prior test NLL {_number(prior_evaluation.get('test_nll'), '.1f')} nats/frame vs baseline "
                     f"{_number(prior_evaluation.get('test_baseline_nll'), '.1f')} (goal: below)")
    return "; ".join(parts)


def summary_lines(demo_dir):
    """Every summary line for the demo folder ``demo_dir``."""
    lines = []
    run = RunDir(os.path.join(demo_dir, "run"))
    evaluation, prior = _read(run.evaluation_json), _read(RunDir(run.prior).evaluation_json)
    if evaluation:
        lines.append(f"demo summary, renderer: test {evaluation['test_bits_per_sample']:.2f} bits/sample teacher-forced "
                     f"on its plans (unigram {_number(evaluation.get('unigram_bits_per_sample'), '.2f')})")
    for folder, title, goals in (
            ("generated", "free clips (the prior's plans, rendered)",
             {"accuracy": "goal >= 0.9, lower end >= 0.8", "flatness": "goal <= 2"}),
            ("resynthesized", "resynthesis (held-out plans, rendered)",
             {"accuracy": "goal >= 0.95", "flatness": "goal <= 1.5"})):
        generation = _read(os.path.join(demo_dir, folder, "generation.json"))
        if not generation:
            continue
        lines.append(judge_line(title, generation, goals))
        plans = plan_line(generation, prior if folder == "generated" else None)
        if plans:
            lines.append(f"demo summary, {title}: {plans}")
        if (generation.get("judge_summary") or {}).get("external_model"):
            lines.append(external_line(title, generation))
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    for line in summary_lines(argv[0] if argv else "data/demo"):
        print(line)


if __name__ == "__main__":
    main()
