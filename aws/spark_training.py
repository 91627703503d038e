"""Stage 3 on Spark: train the local/model/wavenet.py WaveNet with Elephas on windows cut by the executors.

Each epoch, every train track is cut into windows on the executors (local/dataset/windows.py's cutter; uint8 inputs,
uint8 next-code targets), the windows are dealt evenly over `num_workers` partitions, and Elephas trains a
copy of the model on each: `synchronous` averages the workers' weight changes once per epoch; `asynchronous`
and `hogwild` send them to a parameter server on the driver (every epoch or every batch, `frequency`).
After each epoch the master model is scored on the fixed validation windows (the local trainer's) and the
run directory is written in the local format: model.keras, model.json, config.json, metrics.csv (step =
examples seen / batch_size), loss.png, checkpoints/, samples/step-<step>/ (clips after each epoch) and
report.html (the run's page) - so run_model_predictions.py and run_model_training.py work on it unchanged,
and a rerun with the same run_dir resumes (from this job's or the local trainer's latest checkpoint).

Run:
  python aws/spark_training.py --data_dir=data/demo/processed --run_dir=data/demo/run_spark --master=local[2]
  python aws/spark_training.py --run_dir=data/demo/run_spark --epochs=4       # resumes after epoch 2
  spark-submit --py-files waveforms.zip aws/spark_training.py --data_dir=s3://bucket/processed \\
      --run_dir=s3://bucket/runs/emr --num_workers=16                    # on EMR (aws/emr.py adds this step)
  python aws/spark_training.py --help
"""
import os
import time

from local.core.config import StageError, check_choices, check_minimums, stage_main
from local.store.layout import DatasetDir, RunDir

# --- I/O ---
data_dir = "data/processed"  # stage 2's output (folder or URI: file://, hdfs://, s3://)
run_dir = "data/runs/spark"  # where model, checkpoints and metrics go (folder or URI); an existing run resumes
# --- model (as run_model_training.py) ---
dilations = [2 ** i for i in range(10)] * 2  # dilation of each layer (two stacks of 1..512)
layers_per_stack = 0  # when > 0: dilations = 1, 2, ... 2**(layers_per_stack-1), repeated `stacks` times
stacks = 2  # stacks of dilations (used with layers_per_stack)
filter_width = 2  # taps of each dilated convolution
residual_channels = 32  # channels of the residual path
dilation_channels = 32  # channels of the gated units
skip_channels = 128  # channels of the skip path and the head
quantization_channels = 256  # number of codes; must match the dataset
genre_conditioning = False  # add a learned genre embedding into every layer (generate by genre)
genre_channels = 16  # size of that genre embedding
context_rate = 0  # samples per frame of a context stack that hears seconds and conditions every layer (0 = none)
#                   (a smaller stack on frames; 256 = 16 ms frames at 16 kHz)
context_layers = 0  # when > 0: context_dilations = 1, 2, ... 2**(context_layers-1) (6 = 64 frames)
context_dilations = [1, 2, 4, 8, 16, 32]  # context layers' dilations, frames; whole model: 17,661 samples = 1.10 s
#   with rate 256 and the demo's 1,024-sample stack ((frames + 1) x rate - 3 + that; model.json: total_receptive_field)
context_channels = 32  # channels of the context stack
# --- data and optimizer ---
batch_size = 8  # examples per worker step
window = 4000  # output samples per example (each example reads receptive_field + window - 1 codes)
valid_windows = 64  # fixed validation windows drawn from the valid split
start_from_silence = False  # windows may also start at a track's first sample, after the silence generation
#             starts from (train and valid tracks get receptive_field + context_past codes of silence in front)
learning_rate = 1e-3  # Adam step size of every worker
grad_clip = 1.0  # clip the global gradient norm to this (0 = off)
keep_checkpoints = 3  # newest checkpoints kept
sample_seconds = 2.0  # after each epoch, one clip per genre this long for the run's report.html (0 = none)
seed = 1234  # makes the window phases and the initial weights reproducible
# --- Spark and Elephas ---
master = ""  # Spark master: "" = what spark-submit set (else local[*]); e.g. local[2], yarn
epochs = 2  # passes over the train windows (a resumed run continues up to this)
num_workers = 0  # model replicas = partitions of windows; 0 = Spark's default parallelism
mode = "synchronous"  # synchronous (average per epoch) | asynchronous | hogwild (parameter server)
frequency = "epoch"  # asynchronous modes: workers push updates every epoch or every batch
parameter_server_mode = "http"  # asynchronous modes: http (Flask) or socket
port = 4000  # asynchronous modes: the parameter server's port on the driver

# -----------------------------------------------------------------------------


def check_spark_config(config):
    """The Spark and Elephas keys (the training keys are local.train.runner.check_config's); one key per message."""
    check_minimums(config, {"num_workers": 0, "port": 1})
    check_choices(config, {"mode": ("synchronous", "asynchronous", "hogwild"), "frequency": ("epoch", "batch"),
                           "parameter_server_mode": ("http", "socket")})
    if config["port"] > 65535:
        raise StageError(f"--port={config['port']}: must be at most 65535")
    if config.get("plan_bands", 0) > 0:  # Elephas' packed single-input model carries codes and genre only
        raise StageError(f"--plan_bands={config['plan_bands']}: a renderer does not train on Spark yet: train it with "
                         f"run_model_training.py (the plan is computed on the fly from the same dataset)")


def read_dataset(spark, config, stage_dir):
    """(the :class:`local.train.runner.DatasetView` of ``data_dir``, read through Spark, and its tracks DataFrame)."""
    from aws import spark_io
    from local.store import dataset_files
    from local.train import runner
    data_dir = config["data_dir"]
    found = spark_io.fetch(spark, spark_io.join(data_dir, DatasetDir.DATASET_JSON), stage_dir) and \
        spark_io.glob(spark, spark_io.join(data_dir, "tracks", "part-*.parquet"))
    info = dataset_files.read_dataset_json(stage_dir) if found else None
    if info is None:
        return runner.DatasetView(data_dir, None, [], stage2="aws/spark_preprocessing.py"), None
    tracks = spark.read.parquet(spark_io.join(data_dir, DatasetDir.TRACKS)).select("track_id", "genre_id", "split",
                                                                        "n_samples", "codes")
    index = [r.asDict() for r in tracks.select("track_id", "genre_id", "split", "n_samples").collect()]
    return runner.DatasetView(data_dir, info, index, stage2="aws/spark_preprocessing.py"), tracks


def valid_set_on_executors(tracks, valid_index, field, window, n_windows, lead=0, silence_code=0):
    """The local trainer's fixed validation windows (local.dataset.windows.validation_set), cut on the executors."""
    from pyspark.sql.functions import col

    from aws import spark_windows
    from local.dataset import windows as dataset
    counts = spark_windows.valid_window_counts(dataset.lead_in(valid_index, None, lead, silence_code)[0], field,
                                               window, n_windows)
    parts = dict(tracks.filter(col("track_id").isin(list(counts))).rdd.mapPartitions(
        lambda rows: spark_windows.valid_windows(rows, field, window, counts, lead, silence_code)).collect())
    return dataset.concatenate_windows([parts[t["track_id"]] for t in valid_index if t["track_id"] in parts])


def publish_run(spark, local_run, run_dir):
    """Publish the run directory to the URI ``run_dir``, then delete the checkpoints there that the local copy
    no longer keeps (``keep_checkpoints``): publishing only adds files, so old ones would pile up remotely."""
    from aws import spark_io
    from local.store import rundir
    spark_io.publish_tree(spark, local_run, run_dir)
    kept = [os.path.basename(path) for _, path in rundir.list_checkpoints(local_run)]
    spark_io.remove_folders_except(spark, spark_io.join(run_dir, RunDir.CHECKPOINTS), kept, prefix="step-")


def spark_task(setup, config, run_dir):
    """The Spark job's task for local.train.runner.train_one: the model (seeded) and the checkpoint's optimizer.
    Elephas's workers start every epoch from the optimizer's config, so Adam's moments do not outlive an epoch;
    the checkpoint's optimizer (built, zero state) keeps the local checkpoint format loadable both ways."""
    import keras

    from local.model.wavenet import build_wavenet
    from local.train import loop as train_loop
    keras.utils.set_random_seed(config["seed"])
    model = build_wavenet(setup.model_config)
    optimizer = train_loop.make_optimizer(config["learning_rate"], config["grad_clip"])
    optimizer.build(model.trainable_variables)
    return train_loop.Task(model=model, optimizer=optimizer, batches=None, train_step=None, validate=None,
                         batch_size=config["batch_size"], samples_per_example=config["window"],
                         baseline_bits=setup.model_config.uniform_bits)


def elephas_epochs(spark, tracks):
    """The Spark job's loop for local.train.runner.train_one: one Elephas fit per epoch, each ending in a metrics row,
    the callbacks (clips, the page), a checkpoint and model.keras (published to run_dir when that is a URI)."""
    def loop(task, local_run, state, *, config, setup, on_evaluate, writer):
        from pyspark import StorageLevel
        from pyspark.sql.functions import col

        from aws import spark_io, spark_windows
        from local.model.wavenet import build_wavenet
        from local.store import rundir
        from local.train import loop as train_loop
        from local.train import wavenet_task
        run_dir, window, batch_size = config["run_dir"], config["window"], config["batch_size"]
        # a window's codes before its first target (the context stack's past included)
        wavenet, model, field = setup.model_config, task.model, setup.model_config.window_field
        state.setdefault("epoch", 0)
        export_model = build_wavenet(wavenet)  # never compiled: model.keras then loads without this job's loss
        train_model, custom_objects = spark_windows.training_model(model, wavenet)
        train_model.compile(optimizer=train_loop.make_optimizer(config["learning_rate"], config["grad_clip"]),
                            loss=spark_windows.next_code_loss)
        # --start_from_silence: the tracks start after the silence generation starts from (local.train.runner)
        lead, silence = (field if config["start_from_silence"] else 0), wavenet.silence_code
        valid_set = valid_set_on_executors(tracks, setup.valid_tracks, field, window, config["valid_windows"], lead,
                                           silence)
        eval_step = wavenet_task.make_eval_step(model, wavenet, window)
        workers = config["num_workers"] or spark.sparkContext.defaultParallelism
        train_tracks = tracks.filter(col("split") == "train").filter(col("n_samples") >= field + window)
        print(f"Elephas {config['mode']}, {workers} workers, {len(valid_set[1])} valid windows")
        if config["mode"] != "synchronous" and config["frequency"] == "epoch" and workers > 1:
            print(f"note: with --mode={config['mode']} --frequency=epoch the parameter server adds up the {workers} "
                  f"workers' whole-epoch changes (Elephas does not average them): lower --learning_rate, or use "
                  f"--frequency=batch or synchronous")
        started = time.time() - state["elapsed_seconds"]
        for epoch in range(int(state["epoch"]), config["epochs"]):
            epoch_started = time.time()
            windows = train_tracks.rdd.mapPartitions(lambda rows, e=epoch: spark_windows.train_windows(
                rows, receptive_field=field, window=window, seed=config["seed"], epoch=e,
                conditioned=wavenet.conditioned, lead=lead, silence_code=silence)).persist(StorageLevel.MEMORY_AND_DISK)
            dealt, n_windows, k = spark_windows.balanced_windows(windows, batch_size, workers)
            if k < 1:
                raise StageError(f"only {n_windows} train windows: each worker needs more than batch_size={batch_size} "
                                 f"(lower --batch_size or --window, or add tracks)")
            spark_model = spark_windows.elephas_model(
                train_model, mode=config["mode"], frequency=config["frequency"], port=config["port"],
                batch_size=batch_size, custom_objects=custom_objects,
                parameter_server_mode=config["parameter_server_mode"])
            spark_windows.fit_epoch(spark_model, dealt, batch_size)
            windows.unpersist()
            train_model = spark_model.master_network  # the same object Elephas updated in place
            seconds = time.time() - epoch_started
            train_bits = spark_windows.epoch_train_bits(spark_model, dealt, eval_step=eval_step, wavenet_config=wavenet,
                                                        batch_size=batch_size, n_sample=config["valid_windows"])
            state.update(examples_done=state["examples_done"] + n_windows, epoch=epoch + 1,
                         elapsed_seconds=time.time() - started)
            state["step"] = state["examples_done"] // batch_size
            row = rundir.metrics_row(state["step"], losses={
                "train_bits_per_sample": train_bits,
                "valid_bits_per_sample": wavenet_task.evaluate_bits(eval_step, valid_set, batch_size)},
                samples_per_second=n_windows * window / max(seconds, 1e-9), learning_rate=config["learning_rate"],
                elapsed_seconds=state["elapsed_seconds"], extra={"epoch": epoch + 1})
            best = state.get("best_valid_bits_per_sample")
            if best is None or row["valid_bits_per_sample"] < best:
                state["best_valid_bits_per_sample"] = row["valid_bits_per_sample"]
            train_loop.run_callbacks(on_evaluate, train_loop.Evaluation(state["step"], row, None, local_run,
                                                                    final=epoch + 1 == config["epochs"]))
            rundir.record_evaluation(local_run, row, writer=writer, baseline_bits=wavenet.uniform_bits)
            export_model.set_weights(model.get_weights())
            rundir.save_progress(local_run, model, task.optimizer, state, config=config,
                                 keep=config["keep_checkpoints"], export_model=export_model)
            if spark_io.is_uri(run_dir):
                publish_run(spark, local_run, run_dir)
            print(f"epoch {epoch + 1}/{config['epochs']}: {n_windows} windows on {k} workers, train {train_bits:.3f} "
                  f"valid {row['valid_bits_per_sample']:.3f} bits/sample, {row['samples_per_second']:,.0f} samples/s")
        if not os.path.isfile(RunDir(local_run).model_keras):
            export_model.set_weights(model.get_weights())
            rundir.save_model(export_model, local_run)
        return {"step": state["step"], "epoch": state["epoch"]}

    return loop


def train_epochs(spark, config, stage_dir):
    """Stage 3 on Spark: local.train.runner.train_one with the WaveNet kind, the dataset read through Spark, the run
    directory written locally (a copy of run_dir when that is a URI, published after every epoch and at the end)."""
    from aws import spark_io
    from local.train import kinds, runner
    run_dir = config["run_dir"]
    data, tracks = read_dataset(spark, config, stage_dir)
    local_run = run_dir if not spark_io.is_uri(run_dir) else os.path.join(stage_dir, "run")
    if spark_io.is_uri(run_dir):
        spark_io.fetch_tree(spark, run_dir, local_run)
    summary = runner.train_one(kinds.WAVENET, config, dataset=data, make_task=spark_task,
                                 loop=elephas_epochs(spark, tracks), run_dir=local_run,
                                 shown_as=run_dir if local_run != run_dir else None)
    if spark_io.is_uri(run_dir):
        publish_run(spark, local_run, run_dir)
    return summary


@stage_main
def main(argv=None):
    from local.train import kinds
    config = kinds.resolve_config(globals(), argv)
    check_spark_config(config)
    from aws import spark_io  # pyspark, TensorFlow: only once the config is good
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the executors' Python workers inherit it
    spark = spark_io.start_spark("waveforms-training", config["master"])
    try:
        with spark_io.LocalStage() as stage_dir:  # the temp folder goes even when the job stops early
            train_epochs(spark, config, stage_dir)
    finally:
        spark_io.stop_spark(spark)


if __name__ == "__main__":
    main()
