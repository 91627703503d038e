"""Stage 3's sequence, shared by every model kind and both trainers: config checks, the dataset, train_one.

The run directory's files (model.json, the lock, metrics.csv, checkpoints) are local/store/rundir.py's, which
knows no model. A model kind (local/train/kinds.py: the WaveNet, the genre tagger) is described once as a
:class:`ModelKind`: how it checks its keys and its dataset, its model.json, its :class:`Task`, what it does
after training. :func:`train_one` runs that sequence for ``run_model_training.py``, the tagger and
``aws/spark_training.py`` alike (the Spark job brings its own dataset reader, task and epoch loop).

The laptop loop (:func:`local.train.loop.train`) knows nothing of the WaveNet: a model kind hands it a
:class:`local.train.loop.Task` (local/train/wavenet_task.py makes the WaveNet's, local/train/tagger_task.py the
tagger's), and callbacks (``on_evaluate``) may act at every evaluation and add metrics columns.
"""
import dataclasses

from local.core import checks
from local.core.config import ConfigError, StageError, check_choices, check_minimums, configure
from local.dataset import windows
from local.generate import samples
from local.model.wavenet import WaveNetConfig
from local.store import dataset_files, rundir
from local.train.loop import learning_rate_at, resume, train

# The least value of each training key either trainer has (a key a trainer lacks is not checked).
TRAINING_MINIMUMS = {"batch_size": 1, "window": 1, "valid_windows": 1, "keep_checkpoints": 1, "cache_tracks": 1,
                     "prefetch_batches": 1, "eval_every": 1, "checkpoint_every": 1, "steps": 0, "epochs": 1,
                     "warmup_steps": 0, "grad_clip": 0, "min_learning_rate": 0, "stuck_check_step": 0,
                     "max_minutes": 0, "code_noise": 0}
# The most of each: a run that could never end is a typo (1e23 steps), said in one line before any work.
TRAINING_MAXIMUMS = {"steps": 10 ** 9, "tagger_steps": 10 ** 9, "warmup_steps": 10 ** 9, "epochs": 10 ** 6}


# --- config and dataset checks (both trainers) ---------------------------------------------------------

def resolve_config(namespace, argv=None, kinds=None):
    """A trainer's resolved config: its config block (``globals()``, left as written) overridden from
    ``--config`` and ``argv`` (local.core.config.configure), then :func:`check_config` (``kinds``: see there)."""
    config = configure(dict(namespace), argv)
    check_config(config, kinds)
    return config


def check_config(config, kinds=None):
    """Check the stage-3 keys ``config`` has, the model keys included, before any data is read: the shared
    training keys, then the chosen model kind's own (``kinds``: {name: :class:`ModelKind`}, local.train.kinds.KINDS).

    Raises :class:`local.core.config.ConfigError` naming one key and what it accepts.
    """
    check_minimums(config, TRAINING_MINIMUMS)
    if "learning_rate" in config and not config["learning_rate"] > 0:
        raise ConfigError(f"--learning_rate={config['learning_rate']}: must be > 0")
    check_choices(config, {"lr_schedule": ("constant", "cosine"), "model": rundir.MODEL_KINDS})
    if checks.shared_folder_problem(config, "run_dir", "data_dir"):
        raise ConfigError(checks.shared_folder_problem(config, "run_dir", "data_dir"))
    for key, most in TRAINING_MAXIMUMS.items():
        if key in config and config[key] > most:
            raise ConfigError(f"--{key}={config[key]}: must be at most {most:,}")
    samples.check_config(config)
    wavenet = WaveNetConfig.from_config(config)
    if config.get("model", "wavenet") == "wavenet":  # sized before any model is built or data read
        problem = checks.training_memory_problem(config, len(wavenet.dilations), wavenet.window_field)
        if problem:
            raise ConfigError(problem)
    kind = (kinds or {}).get(config.get("model", "wavenet"))
    if kind is not None and kind.check_config is not None:
        kind.check_config(config)


def check_dataset(info, data_dir, quantization_channels, stage2="run_transformation_scripts.py"):
    """The (genres, sample_rate) of a dataset, from its ``dataset.json`` dict ``info`` (None: no dataset).

    Raises StageError (one line naming ``data_dir`` or ``quantization_channels``) when there is no dataset
    or its codes have another number of levels. ``stage2`` names the command that makes one.
    """
    if info is None:
        raise StageError(f"data_dir={data_dir!r} holds no processed dataset (dataset.json and "
                         f"tracks/part-*.parquet): run {stage2} first or pass --data_dir=FOLDER")
    if info["quantization_channels"] != quantization_channels:
        raise StageError(f"--quantization_channels={quantization_channels} but {data_dir}/dataset.json says "
                         f"{info['quantization_channels']}: pass --quantization_channels={info['quantization_channels']}")
    return list(info["genres"]), int(info["sample_rate"])


def usable_splits(index, receptive_field, window, data_dir, sample_rate, *,
                  length_keys="receptive_field + window", fix="lower --window / the dilations"):
    """(train rows, valid rows) of a dataset index long enough for one example (local.dataset.windows.usable_tracks).

    Raises StageError when either split has none (a dataset of under two tracks is told that no valid split
    exists, not to lower --window); prints a note on the train tracks too short to use. ``length_keys`` and
    ``fix`` name, in that message, the keys that set an example's length (another model kind's own).
    """
    problem = checks.split_problem(len(index), len(windows.split_tracks(index, "train")),
                                   len(windows.split_tracks(index, "valid")), data_dir)
    if problem:
        raise StageError(problem)
    train, too_short = windows.usable_tracks(windows.split_tracks(index, "train"), receptive_field, window)
    valid, _ = windows.usable_tracks(windows.split_tracks(index, "valid"), receptive_field, window)
    span = receptive_field + window
    if not train or not valid:
        raise StageError(f"{data_dir}: needs train and valid tracks longer than {length_keys} = {span} "
                         f"samples ({span / sample_rate:.2f} s); it has {len(train)} train and {len(valid)} valid: "
                         f"add tracks or {fix}")
    if too_short:
        print(f"note: {len(too_short)} train tracks shorter than {span} samples are not used")
    return train, valid


# --- one model kind, one sequence (the script, the tagger, the Spark job) ------------------------------------

@dataclasses.dataclass
class DatasetView:
    """What a trainer knows of its dataset before training: ``info`` (dataset.json's dict, None when there is
    no dataset), ``index`` (one dict per track, no codes: track_id, genre, genre_id, split, n_samples, ...),
    ``stage2`` (the command that makes one, for messages). The Spark job reads it through Spark."""
    data_dir: str
    info: dict
    index: list
    stage2: str = "run_transformation_scripts.py"


def local_dataset(data_dir):
    """The :class:`DatasetView` of a dataset folder on this machine."""
    info = dataset_files.read_dataset_json(data_dir) if dataset_files.list_parts(data_dir) else None
    return DatasetView(data_dir, info, dataset_files.read_index(data_dir) if info is not None else [])


@dataclasses.dataclass
class RunSetup:
    """What a model kind decided from the config and the dataset, before any model exists (no TensorFlow).

    model_json    run_dir/model.json's dict (its ``kind``, ``model``, genres, sample_rate, ...)
    model_config  the kind's config dataclass (WaveNetConfig, TaggerConfig)
    train_tracks, valid_tracks   the index rows each split trains and validates on
    steps         the run's last step (a resumed run continues up to it)
    extra         the kind's own (e.g. the judge, the whole index)
    """
    model_json: dict
    model_config: object
    genres: list
    sample_rate: int
    dataset: DatasetView
    train_tracks: list
    valid_tracks: list
    steps: int
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ModelKind:
    """One model kind, described once; :func:`train_one` runs it.

    name          model.json's ``kind`` and the ``model`` key's value
    check_config  (config) -> None: the kind's own keys (ConfigError naming one), or None
    setup         (config, DatasetView) -> :class:`RunSetup`: checks the dataset (StageError, one line)
    task          (setup, config, run_dir) -> :class:`Task`: the model, optimizer, batches and validation
    describe      (setup, task, config) -> the line printed before training
    callbacks     (setup, task, config, state, run_dir) -> on_evaluate callbacks (:func:`train`), or None
    after_train   (setup, task, config, summary, run_dir) -> the summary returned, or None
    """
    name: str
    check_config: object
    setup: object
    task: object
    describe: object
    callbacks: object = None
    after_train: object = None


def train_locally(task, run_dir, state, *, config, setup, on_evaluate, writer):
    """The laptop loop for :func:`train_one`: :func:`train` up to ``setup.steps`` with the config's
    learning-rate schedule (:func:`learning_rate_at`), time budget, evaluation and checkpoint intervals."""
    def learning_rate(step, time_fraction=0.0):
        return learning_rate_at(step, config["learning_rate"], schedule=config["lr_schedule"],
                                warmup_steps=config["warmup_steps"], total_steps=setup.steps,
                                min_learning_rate=config["min_learning_rate"], time_fraction=time_fraction)

    return train(task, run_dir, state, config=config, steps=setup.steps, eval_every=config["eval_every"],
                 checkpoint_every=config["checkpoint_every"], keep_checkpoints=config["keep_checkpoints"],
                 learning_rate_at=learning_rate, max_minutes=config["max_minutes"], on_evaluate=on_evaluate,
                 writer=writer)


def train_one(kind, config, *, dataset=None, make_task=None, loop=train_locally, run_dir=None, shown_as=None):
    """Stage 3 for one resolved config and one :class:`ModelKind`: check the dataset and set the model up, hold
    the run directory (locked for the whole run, released on every path), build the task, resume from the
    newest good checkpoint, write config.json and model.json, train, then the kind's after-train step.

    The Spark job passes its own ``dataset`` (read through Spark), ``make_task`` (``(setup, config, run_dir)``:
    the model and the checkpoint optimizer), ``loop`` (its Elephas epochs; same signature as
    :func:`train_locally`), and ``run_dir`` (the local copy of a remote run, named ``shown_as`` in messages).
    Returns the kind's summary.
    """
    data = dataset if dataset is not None else local_dataset(config["data_dir"])
    setup = kind.setup(config, data)
    run_dir = run_dir or config["run_dir"]
    if loop is train_locally and setup.steps == 0 and not rundir.latest_checkpoint(run_dir):
        steps_key = "tagger_steps" if kind.name != "wavenet" else "steps"
        raise StageError(f"--{steps_key}=0 on a new run would save an untrained model as a finished run: "
                         f"pass --{steps_key}=N (N >= 1)")
    with rundir.locked(run_dir, setup.model_json, shown_as=shown_as):
        task = (make_task or kind.task)(setup, config, run_dir)
        state = resume(run_dir, task.model, task.optimizer, shown_as=shown_as)
        rundir.write_run_files(run_dir, config, setup.model_json)
        print(kind.describe(setup, task, config))
        on_evaluate = kind.callbacks(setup, task, config, state, run_dir) if kind.callbacks else []
        with rundir.tensorboard(run_dir) as writer:
            summary = loop(task, run_dir, state, config=config, setup=setup, on_evaluate=on_evaluate, writer=writer)
        return kind.after_train(setup, task, config, summary, run_dir) if kind.after_train else summary
