"""Sweeps: many training runs from one file, one table of results, resumable.

A sweep file (TOML or JSON) holds the usual flat stage-3 keys (the base config) and a ``[sweep]`` table whose
values are lists::

    steps = 400
    max_minutes = 2.0
    [sweep]
    learning_rate = [1e-3, 3e-3]
    residual_channels = [16, 32]

The runs are the grid of those lists (every combination, in file order), or with ``sweep_mode = "random"``
and ``sweep_runs = N`` (flat keys, or inside ``[sweep]``) N seeded draws from the grid without repetition
(``sweep_seed``, default 0). Run k goes to ``<run_dir>/<name>/``, an ordinary run directory; its name is
made from the varied keys (``lr0.003_rc16``).

A run is finished once its ``sweep_result.json`` exists: a killed sweep, rerun, skips the finished runs and
resumes the interrupted one from its own checkpoint. After every run, ``<run_dir>/sweep.csv`` and
``<run_dir>/sweep.html`` are rewritten from all the results present, and TensorBoard's HParams dashboard
gets the run's values (``tensorboard --logdir <run_dir>``).

The training, evaluation and judging of one run are callables given to :func:`run_sweep`, so this module
knows nothing of the stage script that drives it.
"""
import dataclasses
import itertools
import json
import math
import os
import random
import re
import sys

from local.core.config import ConfigError, coerce_value, config_keys, parse_value, read_config_file, split_arguments
from local.core.fileio import write_json_atomic, write_text_atomic
from local.judge import evaluation
from local.model.wavenet import read_run_model
from local.report import page
from local.report.sweep_table import sweep_html, write_sweep_csv
from local.store import dataset_files, rundir
from local.store.layout import RunDir
from local.train import kinds, runner

SWEEP_OPTIONS = {"sweep_mode": "grid", "sweep_runs": 0, "sweep_seed": 0}
# Keys that describe the whole sweep, not one run: varying them would break the table or the resume.
FIXED_KEYS = ("run_dir", "sweep", "model", "quantization_channels", "data_dir")
RESULT_FILE = RunDir.SWEEP_RESULT
RESULT_COLUMNS = ["steps", "minutes", "train_bits_per_sample", "valid_bits_per_sample", "test_bits_per_sample",
                  "judge_genre_accuracy", "judge_flatness_ratio", "path"]


@dataclasses.dataclass
class SweepPlan:
    """What a sweep file asks for.

    base    flat keys of the file (coerced to the types of the stage's defaults)
    axes    varied key -> list of values, in file order
    points  one dict of varied values per run, in run order
    names   one run-directory name per point
    """
    path: str
    base: dict
    axes: dict
    points: list
    names: list

    @property
    def varied_keys(self):
        return list(self.axes)


def read_sweep_file(path, defaults):
    """Read and check a sweep file against the stage's ``defaults`` (key -> default value); return a SweepPlan.

    Raises ConfigError with one line naming the file and the key: an unknown key, an empty or non-list
    ``[sweep]`` value, a value of the wrong type, a key that cannot vary within a sweep, a bad mode.
    """
    try:
        data = dict(read_config_file(path))
    except ConfigError as e:
        raise ConfigError(str(e).replace("--config", "--sweep", 1)) from None
    table = data.pop("sweep", None)
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"--sweep {path}: needs a [sweep] table of key = [values, ...] lists")
    table = dict(table)
    try:
        return _plan(path, data, table, defaults)
    except ConfigError as e:
        message = str(e)
        raise ConfigError(message if message.startswith(f"--sweep {path}") else f"--sweep {path}: {message}") from None


def _plan(path, data, table, defaults):
    options = dict(SWEEP_OPTIONS)
    for source, where in ((data, ""), (table, "sweep.")):  # [sweep]'s own options win
        for key in SWEEP_OPTIONS:
            if key in source:
                options[key] = coerce_value(where + key, source.pop(key), SWEEP_OPTIONS[key])
    valid = ", ".join(k for k in defaults if k not in FIXED_KEYS)

    def check_known(key, shown):
        if key not in defaults:
            raise ConfigError(f"--sweep {path}: unknown key '{shown}'; valid keys: {valid}")

    base = {}
    for key, value in data.items():
        check_known(key, key)
        if key == "sweep":
            raise ConfigError(f"--sweep {path}: 'sweep' inside a sweep file is not allowed")
        base[key] = coerce_value(key, value, defaults[key])
    axes = {}
    for key, values in table.items():
        check_known(key, f"sweep.{key}")
        if key in FIXED_KEYS:
            raise ConfigError(f"--sweep {path}: sweep.{key} cannot vary within a sweep (it is the same for "
                              f"every run); set it as a flat key or on the command line")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--sweep {path}: sweep.{key} must be a non-empty list of values, "
                              f"like {key} = [{_shown(defaults[key])}, ...]")
        if isinstance(defaults[key], list) and not all(isinstance(v, list) for v in values):
            raise ConfigError(f"--sweep {path}: sweep.{key} takes a list of lists, like "
                              f"{key} = [[1, 2, 4], [1, 2, 4, 8]]")
        coerced = [coerce_value(f"sweep.{key}", v, defaults[key]) for v in values]
        if len({json.dumps(v) for v in coerced}) != len(coerced):
            raise ConfigError(f"--sweep {path}: sweep.{key} lists a value twice")
        axes[key] = coerced
    mode, runs, seed = options["sweep_mode"], options["sweep_runs"], options["sweep_seed"]
    size = math.prod(len(v) for v in axes.values())
    if mode == "grid":
        points = grid_points(axes)
    elif mode == "random":
        if runs < 1:
            raise ConfigError(f"--sweep {path}: sweep_runs must be at least 1 with sweep_mode = \"random\"")
        if runs > size:
            raise ConfigError(f"--sweep {path}: sweep_runs = {runs} but the grid has only {size} points: "
                              f"lower sweep_runs or use sweep_mode = \"grid\"")
        points = random_points(axes, runs, seed)
    else:
        raise ConfigError(f"--sweep {path}: sweep_mode = {mode!r}: expected \"grid\" or \"random\"")
    return SweepPlan(path=path, base=base, axes=axes, points=points, names=run_names(points))


def _shown(value):
    return json.dumps(value)


def grid_points(axes):
    """Every combination of ``axes`` (key -> list), the last key varying fastest; a list of dicts."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def random_points(axes, runs, seed=0):
    """``runs`` distinct grid points drawn with ``random.Random(seed)``, in grid order."""
    grid = grid_points(axes)
    chosen = sorted(random.Random(seed).sample(range(len(grid)), runs))
    return [grid[i] for i in chosen]


def _abbreviation(key):
    parts = [p for p in key.split("_") if p]
    return key if len(parts) == 1 else "".join(p[0] for p in parts)


def _value_text(value):
    if isinstance(value, list):
        return "-".join(_value_text(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_names(points):
    """A short readable, path-safe name per point from its varied keys (``lr0.003_rc16``); unique."""
    if not points:
        return []
    keys = list(points[0])
    short = {k: _abbreviation(k) for k in keys}
    if len(set(short.values())) < len(short):  # two keys abbreviate alike: spell them out
        short = {k: k for k in keys}
    names = []
    for point in points:
        name = "_".join(f"{short[k]}{_value_text(point[k])}" for k in keys) or "run"
        name = re.sub(r"[^A-Za-z0-9._+=-]+", "-", name)[:120]
        names.append(name)
    seen = {}
    for i, name in enumerate(names):  # truncation could make two alike
        if name in seen:
            names[i] = f"{name}-{i}"
        seen[name] = i
    return names


def explicit_overrides(defaults, argv):
    """The keys set on the command line (``--key=value``; not those of ``--config``), parsed like the stage does."""
    _, pairs = split_arguments(sys.argv[1:] if argv is None else argv)
    overrides = {}
    for key, text in pairs:
        if key in defaults:
            overrides[key] = parse_value(key, "true" if text is None else text, defaults[key])
    return overrides


def run_configs(plan, config, argv):
    """The resolved config of every run: the stage config, then the file's flat keys, then the command line's
    explicit keys, then the point's values; ``run_dir`` is the run's folder. A list of (name, config)."""
    cli = explicit_overrides(config, argv)
    cli.pop("sweep", None)
    out = []
    for name, point in zip(plan.names, plan.points):
        resolved = {**config, **plan.base, **cli, **point, "sweep": "",
                    "run_dir": os.path.join(config["run_dir"], name)}
        out.append((name, resolved))
    return out


def cost_line(plan, base_config):
    """One line saying what the sweep will cost, printed before it starts."""
    n = len(plan.points)
    minutes = float(base_config.get("max_minutes", 0) or 0)
    varied = ", ".join(f"{k} ({len(v)})" for k, v in plan.axes.items())
    if minutes > 0:
        return (f"sweep: {n} runs of {varied}, one after another, each at most {minutes:g} min of training: "
                f"up to {n * minutes:g} min in all, plus evaluation")
    return (f"sweep: {n} runs of {varied}, one after another, each up to {base_config.get('steps')} steps "
            f"(no --max_minutes: set it to bound the sweep's time)")


def read_result(run_dir):
    """The finished run's result dict from ``run_dir/sweep_result.json``, or None (unfinished, or unreadable)."""
    try:
        with open(os.path.join(run_dir, RESULT_FILE), encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def result_row(name, point, metrics_rows, evaluation=None, judge=None):
    """One table row: the varied values, then steps, minutes, train/valid/test bits, judge figures, path.

    metrics_rows  the run's metrics.csv rows (dicts; the last one is the run's end)
    evaluation    dict with ``test_bits_per_sample`` or None; judge: dict with ``genre_accuracy``,
                  ``flatness_ratio``, or None: then the judge columns of the last metrics row, which a run
                  trained with ``--judge`` fills from the clips it sampled at its end
    """
    last = metrics_rows[-1] if metrics_rows else {}
    if judge is None:
        judge = {"genre_accuracy": last.get("judge_genre_accuracy"), "flatness_ratio": last.get("judge_flatness_ratio")}
    row = {k: _value_text(v) if isinstance(v, list) else v for k, v in point.items()}
    row.update({
        "steps": int(last.get("step", 0) or 0),
        "minutes": round(float(last.get("elapsed_seconds", 0) or 0) / 60.0, 2),
        "train_bits_per_sample": _number(last.get("train_bits_per_sample")),
        "valid_bits_per_sample": _number(last.get("valid_bits_per_sample")),
        "test_bits_per_sample": _number((evaluation or {}).get("test_bits_per_sample")),
        "judge_genre_accuracy": _number((judge or {}).get("genre_accuracy")),
        "judge_flatness_ratio": _number((judge or {}).get("flatness_ratio")),
        "path": f"{name}/",
    })
    return row


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 4) if math.isfinite(number) else None


def table_rows(sweep_dir, plan):
    """The rows of the finished runs of ``plan`` under ``sweep_dir``, in run order."""
    rows = []
    for name in plan.names:
        result = read_result(os.path.join(sweep_dir, name))
        if result is not None and isinstance(result.get("row"), dict):
            rows.append(result["row"])
    return rows


def write_sweep_table(sweep_dir, plan, cost=""):
    """Rewrite ``sweep_dir/sweep.csv`` and ``sweep_dir/sweep.html`` from the finished runs; return the rows."""
    rows = table_rows(sweep_dir, plan)
    columns = plan.varied_keys + RESULT_COLUMNS
    write_sweep_csv(os.path.join(sweep_dir, "sweep.csv"), columns, rows)
    title = f"Sweep {os.path.basename(os.path.abspath(sweep_dir))} ({os.path.basename(plan.path)})"
    write_text_atomic(os.path.join(sweep_dir, "sweep.html"), sweep_html(title, columns, rows, cost))
    return rows


def _hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    return _value_text(value)


def write_hparams(sweep_dir, plan, name, point, row):
    """TensorBoard HParams: the experiment (at ``sweep_dir``) and this run's values and final figures (in its
    ``tensorboard/`` folder, beside the training scalars), so the dashboard compares the runs side by side."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    metrics = [hp.Metric(k) for k in ("train_bits_per_sample", "valid_bits_per_sample", "test_bits_per_sample",
                                      "judge_genre_accuracy", "judge_flatness_ratio")]
    hparams = [hp.HParam(k, hp.Discrete(sorted({_hparam_value(v) for v in values}, key=str)))
               for k, values in plan.axes.items()]
    with tf.summary.create_file_writer(os.path.join(sweep_dir, "tensorboard-hparams")).as_default():
        hp.hparams_config(hparams=hparams, metrics=metrics)
    with tf.summary.create_file_writer(RunDir(os.path.join(sweep_dir, name)).tensorboard).as_default():
        hp.hparams({k: _hparam_value(v) for k, v in point.items()}, trial_id=name)
        step = int(row.get("steps") or 0)
        for key in ("test_bits_per_sample", "judge_genre_accuracy", "judge_flatness_ratio"):
            if row.get(key) is not None:
                tf.summary.scalar(key, row[key], step=step)


def evaluate_run_dir(run_config):
    """Score a finished run on its dataset's test tracks (``<run_dir>/evaluation.json``, shown on the run's
    report.html, which sweep.html links to); the evaluation dict."""
    import keras

    run_dir, data_dir = run_config["run_dir"], run_config["data_dir"]
    wavenet, info = read_run_model(run_dir)
    model = keras.models.load_model(RunDir(run_dir).model_keras)
    result, _ = evaluation.evaluate_run(model, wavenet, run_dir=run_dir, index=dataset_files.read_index(data_dir),
                                        genres=list(info["genres"]), data_dir=data_dir,
                                        sample_rate=info.get("sample_rate"))
    page.write_report(run_dir)
    return result


def run_sweep_file(config, argv, *, defaults, train_one, log=print):
    """``run_model_training.py --sweep=FILE``: read and check the whole sweep (every run's config) before any
    training, then :func:`run_sweep` with ``train_one``; the table rows.

    defaults  the script's namespace (its config block); raises ConfigError (one line) for a bad sweep
    """
    plan = read_sweep_file(config["sweep"], config_keys(defaults))
    for name, run_config in run_configs(plan, config, argv):
        try:
            runner.check_config(run_config, kinds.KINDS)
        except ConfigError as e:
            raise ConfigError(f"--sweep {config['sweep']}: run {name}: {e}") from None
    return run_sweep(plan, config, argv, train_one=train_one, evaluate_one=evaluate_run_dir, log=log)


def run_sweep(plan, config, argv, *, train_one, evaluate_one, judge_one=None, log=print):
    """Run every point of ``plan`` one after another; return the table rows.

    config        the stage's resolved config (``run_dir`` = the sweep's folder)
    argv          the command line (its explicit keys win over the file's flat keys)
    train_one     callable(run_config) -> None: trains one run to its ``steps`` or ``max_minutes`` (resuming
                  it when its folder holds a checkpoint)
    evaluate_one  callable(run_config) -> dict with ``test_bits_per_sample``
    judge_one     optional callable(run_config) -> dict with ``genre_accuracy``, ``flatness_ratio``
    A run whose ``sweep_result.json`` exists is skipped; the table is rewritten after every run.
    """

    sweep_dir = config["run_dir"]
    os.makedirs(sweep_dir, exist_ok=True)
    runs = run_configs(plan, config, argv)
    cost = cost_line(plan, {**config, **plan.base, **explicit_overrides(config, argv)})
    log(cost)
    done = [name for name, _ in runs if read_result(os.path.join(sweep_dir, name)) is not None]
    if done:
        log(f"sweep: {len(done)} of {len(runs)} runs already finished, skipped: {', '.join(done)}")
    for k, ((name, run_config), point) in enumerate(zip(runs, plan.points), start=1):
        if name in done:
            continue
        log(f"sweep: run {k}/{len(runs)}: {name} -> {run_config['run_dir']}")
        train_one(run_config)
        evaluation = evaluate_one(run_config)
        judge = judge_one(run_config) if judge_one is not None else None
        row = result_row(name, point, rundir.read_metrics(run_config["run_dir"]), evaluation, judge)
        write_json_atomic(os.path.join(run_config["run_dir"], RESULT_FILE),
                          {"name": name, "point": point, "row": row})
        write_hparams(sweep_dir, plan, name, point, row)
        write_sweep_table(sweep_dir, plan, cost)
    rows = write_sweep_table(sweep_dir, plan, cost)
    log(f"sweep: {len(rows)} runs -> {os.path.join(sweep_dir, 'sweep.csv')}, {os.path.join(sweep_dir, 'sweep.html')}")
    return rows
