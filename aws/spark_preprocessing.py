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

from local.core.config import ConfigError, configure, fail, save_config, stage_main
from local.store.layout import DatasetDir

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

# -----------------------------------------------------------------------------


@stage_main
def main(argv=None):
    """Stage 2 on Spark: the local stage's checks, then the decoding on the executors, then its summary."""
    config = configure(dict(globals()), argv)  # a copy: the block above keeps its defaults for the next call
    from aws import spark_io
    from local.dataset import build
    from local.dataset import settings as dataset_settings
    raw_dir, out_dir = config["raw_dir"], config["out_dir"]
    try:
        dataset_settings.check_config(config)
        if config["partitions"] < 0:
            raise ConfigError(f"partitions={config['partitions']} must be 0 (4 per core) or more")
        if not spark_io.is_uri(raw_dir):
            dataset_settings.check_raw_dir(raw_dir, hint="FOLDER_OR_URI")
    except ConfigError as e:
        fail(str(e))
    from aws import spark_dataset  # pyspark: only once the config is good
    spark = spark_io.start_spark("waveforms-preprocessing", config["master"])
    try:
        if not spark_io.exists(spark, raw_dir):
            fail(f"raw_dir={raw_dir!r} does not exist (as Spark sees it): check the URI or pass "
                 f"--raw_dir=FOLDER_OR_URI")
        def record_config():  # once out_dir is known to take these settings: a refused run writes nothing
            with spark_io.LocalStage() as stage_dir:
                spark_io.publish(spark, save_config(config, stage_dir), spark_io.join(out_dir, DatasetDir.CONFIG))
        with spark_dataset.out_dir_lock(out_dir):
            summary = spark_dataset.preprocess_spark_unlocked(spark, raw_dir, out_dir, partitions=config["partitions"],
                                                              on_checked=record_config,
                                                              **dataset_settings.dataset_keys(config))
    except ValueError as e:  # an out_dir in use by another writer (LockHeld), or holding other settings' dataset
        fail(str(e))
    finally:
        spark_io.stop_spark(spark)
    print("\n".join(build.summary_lines(summary)))


if __name__ == "__main__":
    main()
