"""Stage 2 on Spark: the same dataset as run_transformation_scripts.py (same Parquet schema, same codes, same
splits, dataset.json, failures.csv), decoded on the executors by the same local/ functions.

Input: a folder or URI Spark can read (a local folder, file://, hdfs:// on a cluster, s3:// on EMR) holding
stage 1's output; its manifest.csv is used when present, else every audio file (genre = folder name).
Files are read by Spark's binaryFile source and decoded by ffmpeg through a pipe on the executors.

Run:
  python aws/spark_preprocessing.py --raw_dir=data/demo/raw --out_dir=data/demo/processed --master=local[2]
  spark-submit --py-files waveforms.zip aws/spark_preprocessing.py --raw_dir=s3://bucket/raw \\
      --out_dir=s3://bucket/processed --partitions=512          # on EMR (aws/emr.py adds this step)
  python aws/spark_preprocessing.py --help

A rerun processes only new or changed files; a killed run leaves no part that a reader or a rerun trusts.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from local.config import configure, fail  # noqa: E402

# --- I/O ---
raw_dir = "data/raw"  # stage 1's output: a folder or a URI (file://, hdfs://, s3://)
out_dir = "data/processed"  # where tracks/part-*.parquet, dataset.json and failures.csv go (folder or URI)
# --- audio ---
sample_rate = 16000  # Hz, the rate the model hears
quantization_channels = 256  # mu-law levels (codes 0..255)
trim_silence = True  # cut leading and trailing silence
silence_threshold = 60.0  # dB below the track's peak that counts as silence when trimming
min_seconds = 1.0  # shorter tracks (after trimming) are reported and skipped, seconds
# --- splits ---
valid_fraction = 0.1  # share of tracks for validation (when the source gives no split)
test_fraction = 0.1  # share of tracks for the test set
split_seed = 0  # the split is a stable hash of track_id and this seed
# --- system ---
workers = 2  # stage 2's key, accepted so one config file serves both; on Spark the executors' cores decide
rows_per_part = 64  # stage 2's key, accepted likewise; on Spark each task writes one part file
master = ""  # Spark master: "" = what spark-submit set (else local[*]); e.g. local[2], yarn
partitions = 0  # decoding tasks (files are packed by size); 0 = 4 per core

config = configure(globals())
# -----------------------------------------------------------------------------

if not 0 <= valid_fraction < 1 or not 0 <= test_fraction < 1 or valid_fraction + test_fraction >= 1:
    fail(f"valid_fraction={valid_fraction} and test_fraction={test_fraction} must be >= 0 and sum below 1")
if not 2 <= quantization_channels <= 256:
    fail(f"quantization_channels={quantization_channels} must be between 2 and 256 (codes are one byte)")
if sample_rate <= 0 or partitions < 0:
    fail(f"sample_rate={sample_rate} must be positive and partitions={partitions} at least 0")

from aws import spark_dataset, spark_io  # noqa: E402  (imports pyspark: only once the config is good)

if not spark_io.is_uri(raw_dir) and not os.path.isdir(raw_dir):
    fail(f"raw_dir={raw_dir!r} does not exist: run run_webscraper.py first or pass --raw_dir=FOLDER_OR_URI")
spark = spark_io.start_spark("waveforms-preprocessing", master)
if not spark_io.exists(spark, raw_dir):
    fail(f"raw_dir={raw_dir!r} does not exist (as Spark sees it): check the URI or pass --raw_dir=FOLDER_OR_URI")

with spark_io.LocalStage() as stage:
    from local.config import save_config
    spark_io.publish(spark, save_config(config, stage), spark_io.join(out_dir, "config.json"))
try:
    summary = spark_dataset.preprocess_spark(spark, raw_dir, out_dir, sample_rate, quantization_channels,
                                             trim_silence, silence_threshold, min_seconds, valid_fraction,
                                             test_fraction, split_seed, partitions)
except ValueError as e:
    fail(str(e))
spark_io.stop_spark(spark)

for path, text in summary["warnings"]:
    print(f"warning: {path}: {text}")
for path, reason in summary["failed"]:
    print(f"skipped: {path}: {reason}")
dataset = summary["dataset"]
print(f"{summary['processed']} tracks processed, {summary['skipped']} already done, "
      f"{len(summary['failed'])} failed (see {spark_io.join(out_dir, 'failures.csv')})")
if summary["decoded_with_libsndfile"]:  # as run_transformation_scripts.py says it
    print(f"{summary['decoded_with_libsndfile']} of them refused by ffmpeg and decoded with libsndfile")
if summary["decode_core_seconds"]:  # what sizing a cluster needs: divide by the cores you will have
    print(f"decoding took {summary['decode_core_seconds']:.1f} core-seconds for "
          f"{summary['processed'] + len(summary['failed'])} files")
print(f"dataset: {out_dir}  {dataset['n_tracks']} tracks, {dataset['n_samples'] / sample_rate / 60:.1f} min; "
      f"train/valid/test tracks = {dataset['tracks']['train']}/{dataset['tracks']['valid']}/"
      f"{dataset['tracks']['test']}; genres: {', '.join(dataset['genres'])}")
