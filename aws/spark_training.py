"""Stage 3 on Spark: train the local/wavenet.py WaveNet with Elephas on windows cut by the executors.

Each epoch, every train track is cut into windows on the executors (local/dataset.py's cutter; uint8 inputs,
uint8 next-code targets), the windows are dealt evenly over `num_workers` partitions, and Elephas trains a
copy of the model on each: `synchronous` averages the workers' weight changes once per epoch; `asynchronous`
and `hogwild` send them to a parameter server on the driver (every epoch or every batch, `frequency`).
After each epoch the master model is scored on the fixed validation windows (the local trainer's) and the
run directory is written in the local format: model.keras, model.json, config.json, metrics.csv (step =
examples seen / batch_size), loss.png, checkpoints/ - so run_model_predictions.py and run_model_training.py
work on it unchanged, and a rerun with the same run_dir resumes (from this job's or the local trainer's
latest checkpoint).

Run:
  python aws/spark_training.py --data_dir=data/demo/processed --run_dir=data/demo/run_spark --master=local[2]
  python aws/spark_training.py --run_dir=data/demo/run_spark --epochs=4       # resumes after epoch 2
  spark-submit --py-files waveforms.zip aws/spark_training.py --data_dir=s3://bucket/processed \\
      --run_dir=s3://bucket/runs/emr --num_workers=16                    # on EMR (aws/emr.py adds this step)
  python aws/spark_training.py --help
"""
import atexit
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.config import configure, fail, save_config  # noqa: E402

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
# --- data and optimizer ---
batch_size = 8  # examples per worker step
window = 4000  # output samples per example (each example reads receptive_field + window - 1 codes)
valid_windows = 64  # fixed validation windows drawn from the valid split
learning_rate = 1e-3  # Adam step size of every worker
grad_clip = 1.0  # clip the global gradient norm to this (0 = off)
keep_checkpoints = 3  # newest checkpoints kept
seed = 1234  # makes the window phases and the initial weights reproducible
# --- Spark and Elephas ---
master = ""  # Spark master: "" = what spark-submit set (else local[*]); e.g. local[2], yarn
epochs = 2  # passes over the train windows (a resumed run continues up to this)
num_workers = 0  # model replicas = partitions of windows; 0 = Spark's default parallelism
mode = "synchronous"  # synchronous (average per epoch) | asynchronous | hogwild (parameter server)
frequency = "epoch"  # asynchronous modes: workers push updates every epoch or every batch
parameter_server_mode = "http"  # asynchronous modes: http (Flask) or socket
port = 4000  # asynchronous modes: the parameter server's port on the driver

config = configure(globals())
# -----------------------------------------------------------------------------

for key in ("filter_width", "residual_channels", "dilation_channels", "skip_channels", "genre_channels",
            "batch_size", "window", "valid_windows", "keep_checkpoints", "epochs"):
    if config[key] < 1:
        fail(f"--{key}={config[key]}: must be at least 1")
if filter_width < 2:
    fail(f"--filter_width={filter_width}: must be at least 2 (a causal convolution needs a past tap)")
if layers_per_stack > 0:
    dilations = [2 ** i for i in range(layers_per_stack)] * max(1, stacks)
if not dilations or any(d < 1 for d in dilations):
    fail(f"--dilations={','.join(map(str, dilations))}: need at least one layer, every dilation >= 1")
if mode not in ("synchronous", "asynchronous", "hogwild"):
    fail(f"--mode={mode}: expected synchronous, asynchronous or hogwild")
if frequency not in ("epoch", "batch") or parameter_server_mode not in ("http", "socket"):
    fail(f"--frequency={frequency} / --parameter_server_mode={parameter_server_mode}: expected epoch|batch, http|socket")
if learning_rate <= 0 or grad_clip < 0 or num_workers < 0 or not 0 < port < 65536:
    fail("learning_rate must be > 0, grad_clip >= 0, num_workers >= 0 and port in 1..65535")

from aws import spark_io  # noqa: E402  (pyspark, TensorFlow: only once the config is good)
from local import dataset_store  # noqa: E402
from local.wavenet import model_settings, receptive_field  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the executors' Python workers inherit it
spark = spark_io.start_spark("waveforms-training", master)
sc = spark.sparkContext
stage = spark_io.LocalStage()
stage_dir = stage.__enter__()
atexit.register(stage.__exit__, None, None, None)  # the temp folder goes even when fail() stops the job
if not spark_io.fetch(spark, spark_io.join(data_dir, "dataset.json"), stage_dir) or \
        not spark_io.glob(spark, spark_io.join(data_dir, "tracks", "part-*.parquet")):
    fail(f"data_dir={data_dir!r} holds no processed dataset (dataset.json and tracks/part-*.parquet): "
         f"run aws/spark_preprocessing.py first or pass --data_dir=FOLDER_OR_URI")
info = dataset_store.read_dataset_json(stage_dir)
if info["quantization_channels"] != quantization_channels:
    fail(f"--quantization_channels={quantization_channels} but {data_dir}/dataset.json says "
         f"{info['quantization_channels']}: pass --quantization_channels={info['quantization_channels']}")
genres, sample_rate = list(info["genres"]), int(info["sample_rate"])
settings = model_settings({**config, "dilations": dilations}, n_genres=len(genres))
field = receptive_field(dilations, filter_width)
span = field + window

from pyspark import StorageLevel  # noqa: E402
from pyspark.sql.functions import col  # noqa: E402

from aws import spark_windows  # noqa: E402
from local import dataset, training  # noqa: E402

tracks = spark.read.parquet(spark_io.join(data_dir, "tracks")).select("track_id", "genre_id", "split", "n_samples",
                                                                    "codes")
index = [r.asDict() for r in tracks.select("track_id", "genre_id", "split", "n_samples").collect()]
train_index, too_short = dataset.usable_tracks(dataset.split_tracks(index, "train"), field, window)
valid_index, _ = dataset.usable_tracks(dataset.split_tracks(index, "valid"), field, window)
if not train_index or not valid_index:
    fail(f"{data_dir}: needs train and valid tracks longer than receptive_field + window = {span} samples "
         f"({span / sample_rate:.2f} s); it has {len(train_index)} train and {len(valid_index)} valid: "
         f"add tracks or lower --window / the dilations")
if too_short:
    print(f"note: {len(too_short)} train tracks shorter than {span} samples are not used")

# The run directory: written locally, then published to run_dir when that is a URI.
local_run = run_dir if not spark_io.is_uri(run_dir) else os.path.join(stage_dir, "run")
os.makedirs(local_run, exist_ok=True)
if spark_io.is_uri(run_dir):
    spark_io.fetch_tree(spark, run_dir, local_run)
training.remove_stale_temps(local_run)
conflict = training.resume_conflict(local_run, settings, shown_as=run_dir)
if conflict:
    fail(conflict)



def publish_run():
    """Publish the run directory to run_dir, then delete the checkpoints there that the local copy no longer
    keeps (``keep_checkpoints``): publishing only adds files, so old ones would pile up remotely."""
    spark_io.publish_tree(spark, local_run, run_dir)
    kept = [os.path.basename(path) for _, path in training.list_checkpoints(local_run)]
    spark_io.remove_folders_except(spark, spark_io.join(run_dir, "checkpoints"), kept, prefix="step-")


import keras  # noqa: E402
import numpy as np  # noqa: E402

from local.wavenet import build_wavenet  # noqa: E402

keras.utils.set_random_seed(seed)
wavenet = build_wavenet(**settings)
# Elephas's workers start every epoch from the optimizer's config, so Adam's moments do not outlive an epoch;
# the checkpoint's optimizer (built, zero state) keeps the local checkpoint format loadable both ways.
checkpoint_optimizer = training.make_optimizer(learning_rate, grad_clip)
checkpoint_optimizer.build(wavenet.trainable_variables)
state = {"step": 0, "examples_done": 0, "epoch": 0, "best_valid_bits_per_sample": None, "elapsed_seconds": 0.0}
checkpoint = training.latest_checkpoint(local_run)
if checkpoint:
    state = {**state, **training.load_checkpoint(checkpoint[1], wavenet, checkpoint_optimizer)}
    print(f"resuming {run_dir} from epoch {state['epoch']}, step {state['step']} ({checkpoint[1]})")
training.truncate_metrics(local_run, state["step"])
save_config(config, local_run)
training.write_model_json(local_run, settings, genres, sample_rate, quantization_channels, field, data_dir)
export_model = build_wavenet(**settings)  # never compiled: model.keras then loads without this job's loss
train_model, custom_objects = spark_windows.training_model(wavenet)
train_model.compile(optimizer=training.make_optimizer(learning_rate, grad_clip), loss=spark_windows.next_code_loss)
conditioned = train_model is not wavenet

# The fixed validation windows, cut on the executors exactly as the local trainer cuts them.
counts = spark_windows.valid_window_counts(valid_index, field, window, valid_windows)
valid_parts = dict(tracks.filter(col("track_id").isin(list(counts))).rdd.mapPartitions(
    lambda rows: spark_windows.valid_windows(rows, field, window, counts)).collect())
parts = [valid_parts[t["track_id"]] for t in valid_index if t["track_id"] in valid_parts]
valid_set = ({"codes": np.concatenate([p[0]["codes"] for p in parts]),
              "genre_id": np.concatenate([p[0]["genre_id"] for p in parts])}, np.concatenate([p[1] for p in parts]))
eval_step = training.make_eval_step(wavenet, window)
uniform_bits = math.log2(quantization_channels)
workers = num_workers or sc.defaultParallelism
train_tracks = tracks.filter(col("split") == "train").filter(col("n_samples") >= span)
print(f"{wavenet.count_params():,} parameters, receptive field {field} samples, {len(train_index)} train / "
      f"{len(valid_index)} valid tracks, {len(valid_set[1])} valid windows; Elephas {mode}, {workers} workers")

if mode != "synchronous" and frequency == "epoch" and workers > 1:
    print(f"note: with --mode={mode} --frequency=epoch the parameter server adds up the {workers} workers' whole-epoch "
          f"changes (Elephas does not average them): lower --learning_rate, or use --frequency=batch or synchronous")
started = time.time() - state["elapsed_seconds"]
for epoch in range(int(state["epoch"]), epochs):
    epoch_started = time.time()
    windows = train_tracks.rdd.mapPartitions(
        lambda rows, e=epoch: spark_windows.train_windows(rows, field, window, seed, e, conditioned))
    windows = windows.persist(StorageLevel.MEMORY_AND_DISK)
    dealt, n_windows, k = spark_windows.balanced_windows(windows, batch_size, workers)
    if k < 1:
        fail(f"only {n_windows} train windows: each worker needs more than batch_size={batch_size} "
             f"(lower --batch_size or --window, or add tracks)")
    spark_model = spark_windows.elephas_model(train_model, mode, frequency, port, batch_size, custom_objects,
                                              parameter_server_mode)
    spark_windows.fit_epoch(spark_model, dealt, batch_size)
    windows.unpersist()
    train_model = spark_model.master_network  # the same object Elephas updated in place
    seconds = time.time() - epoch_started
    histories = [h for h in spark_model.training_histories if h and h.get("loss")]
    if histories:  # synchronous: each worker's mean loss over its share of the epoch (nats)
        train_bits = float(np.mean([h["loss"][-1] for h in histories])) / training.LN2
    else:  # asynchronous modes report no history: score the master on a sample of this epoch's windows
        sample = dealt.take(valid_windows)
        rows_x = np.stack([x for x, _ in sample]).astype(np.int32)
        features = {"codes": rows_x[:, 1:] if conditioned else rows_x,
                    "genre_id": rows_x[:, 0] if conditioned else np.zeros(len(rows_x), np.int32)}
        train_bits = training.evaluate_bits(eval_step, (features, np.stack([y for _, y in sample]).astype(np.int32)),
                                            batch_size)
    valid_bits = training.evaluate_bits(eval_step, valid_set, batch_size)
    state["examples_done"] += n_windows
    state["step"] = state["examples_done"] // batch_size
    state["epoch"] = epoch + 1
    if state["best_valid_bits_per_sample"] is None or valid_bits < state["best_valid_bits_per_sample"]:
        state["best_valid_bits_per_sample"] = valid_bits
    state["elapsed_seconds"] = time.time() - started
    training.append_metrics(local_run, {"step": state["step"], "train_bits_per_sample": train_bits,
                                        "valid_bits_per_sample": valid_bits,
                                        "samples_per_second": n_windows * window / max(seconds, 1e-9),
                                        "learning_rate": learning_rate, "elapsed_seconds": state["elapsed_seconds"],
                                        "epoch": epoch + 1})
    training.plot_metrics(local_run, baseline_bits=uniform_bits)
    training.save_checkpoint(local_run, state["step"], wavenet, checkpoint_optimizer,
                             {**{k: v for k, v in state.items() if k != "step"}, "seed": seed, "config": config},
                             keep=keep_checkpoints)
    export_model.set_weights(wavenet.get_weights())
    training.save_model(export_model, local_run)
    if spark_io.is_uri(run_dir):
        publish_run()
    print(f"epoch {epoch + 1}/{epochs}: {n_windows} windows on {k} workers, train {train_bits:.3f} "
          f"valid {valid_bits:.3f} bits/sample, {n_windows * window / seconds:,.0f} samples/s")

if not os.path.isfile(os.path.join(local_run, "model.keras")):
    export_model.set_weights(wavenet.get_weights())
    training.save_model(export_model, local_run)
    if spark_io.is_uri(run_dir):
        publish_run()
spark_io.stop_spark(spark)
print(f"done: {run_dir} (epoch {state['epoch']}, step {state['step']}; uniform baseline {uniform_bits:.2f} bits)")
