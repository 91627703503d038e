"""The model kinds stage 3 trains, each described once for :func:`local.train.runner.train_one`: the WaveNet
(generates audio), the genre tagger (classifies raw waveforms; judges the WaveNet's clips) and the plan prior
(writes plans, log-mel frames, that a renderer plays).

A kind says how it checks its keys and its dataset and what its model.json holds (``setup``), builds its
model, optimizer and data (``task``), what it prints before training, which callbacks act at each
evaluation, and what it does once trained. ``run_model_training.py``, ``--sweep`` and ``aws/spark_training.py``
all go through :func:`train_config` or :func:`local.train.runner.train_one` with one of these.
"""
import dataclasses
import math

from local.audio.decoding import DecodeSettings
from local.core import checks
from local.core.config import StageError
from local.dataset import windows as dataset
from local.judge import external, tagger_features
from local.model import prior as model_prior
from local.model import tagger as model_tagger
from local.model.wavenet import WaveNetConfig
from local.report import page as report
from local.store import rundir
from local.train import loop, runner
from local.train import prior_task as train_prior_task
from local.train import tagger_task as train_tagger_task
from local.train import wavenet_task as train_wavenet_task
from local.train.runner import ModelKind, RunSetup

# --- the WaveNet ---------------------------------------------------------------------------------------------

def wavenet_setup(config, data):
    """The WaveNet's :class:`local.train.runner.RunSetup`: the dataset's genres and rate, the model (its receptive
    field sets which tracks are long enough), model.json, and the judge (``--judge``: a tagger run that must
    fit this dataset's genres and sample rate, checked before any training)."""
    genres, sample_rate = runner.check_dataset(data.info, data.data_dir, config["quantization_channels"],
                                                 stage2=data.stage2)
    wavenet = WaveNetConfig.from_config(config, n_genres=len(genres))
    # a renderer's window may move back up to one plan frame to start on one (local.dataset.windows.WindowPlan)
    field = wavenet.window_field + (wavenet.plan_hop if wavenet.has_plan else 0)
    train_tracks, valid_tracks = runner.usable_splits(data.index, field, config["window"], data.data_dir, sample_rate)
    problem = checks.sampling_memory_problem(config.get("sample_seconds", 0), len(genres), sample_rate,
                                             wavenet.receptive_field, wavenet.residual_channels)
    if problem:  # before any model is built: the clips are sampled only once training is under way
        raise StageError(problem)
    model_json = train_wavenet_task.wavenet_model_json(wavenet, genres=genres, sample_rate=sample_rate, data_dir=data.data_dir)
    judged = None
    if config.get("judge"):
        judged = external.wavenet_judges(config["judge"], genres=genres, sample_rate=sample_rate,
                                     wavenet_run=config["run_dir"], data_dir=data.data_dir)
    return RunSetup(model_json, wavenet, genres, sample_rate, data, train_tracks, valid_tracks,
                steps=config.get("steps", 0), extra={"judge": judged})


def wavenet_task(setup, config, run_dir):
    """The WaveNet's task (local.train.wavenet_task.wavenet_task), and its baselines: the uniform and the train tracks'
    unigram bits/sample, kept in the setup and written for the run's page."""
    task = train_wavenet_task.wavenet_task(setup.model_config, train_tracks=setup.train_tracks, valid_tracks=setup.valid_tracks,
                                 config=config, sample_rate=setup.sample_rate)
    setup.extra["baselines"] = {"unigram": dataset.unigram_bits(setup.train_tracks,
                                                               setup.model_config.quantization_channels),
                               "uniform": task.baseline_bits}
    report.write_baselines(run_dir, setup.extra["baselines"]["uniform"], setup.extra["baselines"]["unigram"])
    return task


def wavenet_describe(setup, task, config):
    line = train_wavenet_task.describe(task.model, setup.model_config, sample_rate=setup.sample_rate,
                             n_train=len(setup.train_tracks), n_valid=len(setup.valid_tracks),
                             n_valid_windows=config["valid_windows"])
    baselines = setup.extra.get("baselines")
    if baselines:
        line += "; baselines: " + ", ".join(f"{k} {v:.2f}" for k, v in baselines.items()) + " bits/sample"
    return line


def wavenet_callbacks(setup, task, config, state, run_dir):
    """A warning when the loss is stuck at the start, clips sampled (and judged) every ``sample_every`` steps,
    and the run's page. The Spark job has no ``sample_every``/``eval_every``: every evaluation (epoch) then."""
    judged = setup.extra.get("judge")
    return [loop.stuck_warning(config.get("stuck_check_step", 0), setup.model_config.quantization_channels,
                                   state["step"]),
            # a renderer's clips need plans: stage 4 renders them (--plan), so training samples none
            *report.report_callbacks(task.model, run_dir, sample_every=config.get("sample_every", 1),
                                     sample_seconds=0 if setup.model_config.has_plan else config["sample_seconds"], seed=config["seed"],
                                     eval_every=config.get("eval_every", 1),
                                     judge_clips=judged.judge if judged else None)]


def wavenet_after_train(setup, task, config, summary, run_dir):
    print(f"report: {report.write_report(run_dir)}")
    print(rundir.done_line(run_dir, setup.extra.get("baselines") or {"uniform": setup.model_config.uniform_bits},
                                    shown_as=None if run_dir == config["run_dir"] else config["run_dir"]))
    return summary


WAVENET = ModelKind("wavenet", check_config=None, setup=wavenet_setup, task=wavenet_task, describe=wavenet_describe,
                    callbacks=wavenet_callbacks, after_train=wavenet_after_train)


# --- the genre tagger ----------------------------------------------------------------------------------------

def tagger_setup(config, data):
    """The tagger's setup: the dataset's genres and rate, windows of ``tagger_input_samples``, model.json with
    stage 2's decode settings (files are tagged as the dataset was made); ``tagger_steps`` steps."""
    genres, sample_rate = runner.check_dataset(data.info, data.data_dir, config["quantization_channels"],
                                                 stage2=data.stage2)
    tagger_config = model_tagger.TaggerConfig.from_config(config, n_genres=len(genres))
    features = None
    if tagger_config.pretrained:  # the pretrained network first: a missing install is told before any work
        features = tagger_features.feature_function(tagger_config.features)
        tagger_config = dataclasses.replace(tagger_config, feature_size=features.size)
    # a pretrained network repeat-pads a short track: any track will do
    train_tracks, valid_tracks = train_tagger_task.usable_splits(data.index, 1 if features else tagger_config.input_samples,
                                                      data.data_dir, sample_rate)
    refused = train_tagger_task.figure_refused("test", [r for r in data.index if r["split"] == "test" and r["genre"] in genres])
    if refused:  # said before training too: the run can be stopped now
        print(f"warning: {refused}")
    model_json = model_tagger.tagger_model_json(tagger_config, genres=genres, sample_rate=sample_rate,
                                          data_dir=data.data_dir, decode=DecodeSettings.from_dict(data.info))
    return RunSetup(model_json, tagger_config, genres, sample_rate, data, train_tracks, valid_tracks,
                steps=config["tagger_steps"], extra={"features": features})


def tagger_task(setup, config, run_dir):
    """The waveform tagger's task, or the transfer mode's (a head on pretrained embeddings; its ``predict``
    kept in the setup for the evaluation)."""
    if setup.extra.get("features") is None:
        return train_tagger_task.tagger_task(setup.model_config, train_tracks=setup.train_tracks, valid_tracks=setup.valid_tracks,
                                  config=config)
    task, setup.extra["predict"] = train_tagger_task.transfer_task(
        setup.model_config, setup.extra["features"], index=setup.dataset.index, genres=setup.genres,
        sample_rate=setup.sample_rate, train_tracks=setup.train_tracks, valid_tracks=setup.valid_tracks, config=config,
        run_dir=run_dir)
    return task


def tagger_describe(setup, task, config):
    return (f"tagger: {task.model.count_params():,} parameters, "
            f"{train_tagger_task.training_line(setup.model_config, config, setup.sample_rate)}, {len(setup.train_tracks)} train / "
            f"{len(setup.valid_tracks)} valid tracks, genres: {', '.join(setup.genres)}; chance "
            f"{setup.model_config.chance_bits:.2f} bits/window")


def tagger_after_train(setup, task, config, summary, run_dir):
    """Track-level accuracy on the valid and test tracks (evaluation.json), printed as a table."""
    result = train_tagger_task.write_evaluation(run_dir, task.model, setup.dataset.index, setup.genres,
                                     data_dir=setup.dataset.data_dir, input_samples=setup.model_config.input_samples,
                                     max_windows=config["tagger_eval_windows"],
                                     quantization_channels=config["quantization_channels"],
                                     predict=setup.extra.get("predict"),
                                     extra={"features": setup.model_config.features,
                                            "balanced_training": setup.model_config.pretrained
                                            or setup.model_config.balanced})
    train_tagger_task.print_evaluation(result, run_dir)
    return {**summary, "evaluation": result}


TAGGER = ModelKind(model_tagger.KIND, check_config=model_tagger.check_config, setup=tagger_setup, task=tagger_task,
                   describe=tagger_describe, after_train=tagger_after_train)

# --- the plan prior ------------------------------------------------------------------------------------------

def prior_setup(config, data):
    """The prior's setup: the dataset's genres and rate, the plan keys (the renderer's with ``renderer_dir``,
    else the config's), tracks of at least ``prior_window`` frames (their plans sized against memory), model.json;
    ``prior_steps`` steps."""
    genres, sample_rate = runner.check_dataset(data.info, data.data_dir, config["quantization_channels"],
                                                 stage2=data.stage2)
    plan = train_prior_task.resolve_plan(config, sample_rate, config["quantization_channels"])
    prior_config = model_prior.PriorConfig.from_config(config, plan, n_genres=len(genres))
    train, valid, test = train_prior_task.usable_plan_tracks([r for r in data.index if r["genre"] in genres], plan,
                                                          prior_config.window, data.data_dir)
    model_json = model_prior.prior_model_json(prior_config, genres=genres, sample_rate=sample_rate,
                                              quantization_channels=config["quantization_channels"],
                                              data_dir=data.data_dir, renderer_dir=config.get("renderer_dir", ""))
    return RunSetup(model_json, prior_config, genres, sample_rate, data, train, valid, steps=config["prior_steps"],
                    extra={"plan": plan, "test_tracks": test})


def prior_task(setup, config, run_dir):
    """The prior's task (local.train.prior_task.prior_task) on the tracks' plans, and the per-genre baseline
    fitted first (kept in the setup for the evaluation; its valid bits/frame is loss.png's dashed line)."""
    plan = setup.extra["plan"]
    plans = {"train": train_prior_task.track_plans(setup.train_tracks, plan),
             "valid": train_prior_task.track_plans(setup.valid_tracks, plan),
             "test": train_prior_task.track_plans(setup.extra["test_tracks"], plan)}
    baseline = train_prior_task.fit_baseline(plans["train"], len(setup.genres), setup.model_config, config["seed"])
    setup.extra.update(plans=plans, baseline=baseline,
                       baseline_valid=train_prior_task.baseline_nll(baseline, plans["valid"], setup.model_config))
    return train_prior_task.prior_task(setup.model_config, plans=plans, config=config, run_dir=run_dir,
                                       baseline_bits=setup.extra["baseline_valid"] / math.log(2))


def prior_describe(setup, task, config):
    c = setup.model_config
    return (f"prior: {task.model.count_params():,} parameters, {c.layers} layers of {c.channels} channels, receptive "
            f"field {c.receptive_field} frames ({c.receptive_field / setup.extra['plan'].frames_per_second:.1f} s), "
            f"{c.mixtures} logistics per band of {c.plan_bands}, input noise {c.input_noise:g} dB; "
            f"{len(setup.train_tracks)} train / {len(setup.valid_tracks)} valid tracks, genres: "
            f"{', '.join(setup.genres)}; baseline {setup.extra['baseline_valid']:.1f} nats/frame on valid")


def prior_after_train(setup, task, config, summary, run_dir):
    """Valid and test NLL per frame of the best-valid model and of the baseline (evaluation.json), printed."""
    result = train_prior_task.write_evaluation(run_dir, task.export_model, setup.model_config, setup.extra["plans"],
                                               setup.extra["baseline"], extra={"steps": summary["step"]})
    train_prior_task.print_evaluation(result, run_dir)
    return {**summary, "evaluation": result}


PRIOR = ModelKind(model_prior.KIND, check_config=train_prior_task.check_config, setup=prior_setup, task=prior_task,
                  describe=prior_describe, after_train=prior_after_train)

KINDS = {kind.name: kind for kind in (WAVENET, TAGGER, PRIOR)}


def resolve_config(namespace, argv=None):
    """A stage-3 script's resolved config (local.train.runner.resolve_config), its model kind's keys checked."""
    return runner.resolve_config(namespace, argv, KINDS)


def train_config(config):
    """Stage 3 for one resolved config: the kind its ``model`` key names, through local.train.runner.train_one."""
    return runner.train_one(KINDS[config.get("model", "wavenet")], config)
