"""Stage 2 on Spark: the files are read by Spark's binaryFile source and decoded on the executors by the very
functions the local stage uses (:func:`local.preprocessing.process_batch`), so the codes are the same bytes.

The driver only lists files and plans (splits, genre ids: :func:`local.preprocessing.plan_tracks`); audio
is never collected on it. Executors return rows of :data:`local.dataset_store.TRACK_SCHEMA`, which Spark
writes as ``<out_dir>/tracks/part-*.parquet`` (visible only once the job commits); then ``dataset.json`` and
``failures.csv`` are written as the local stage writes them.
"""
import hashlib
import json
import os
import time

from pyspark.accumulators import AccumulatorParam

from aws import spark_io
from local import dataset_store as store
from local import manifest, preprocessing


class ListParam(AccumulatorParam):
    """An accumulator of lists: the (kind, path, text) events of the executors (failures and warnings)."""

    def zero(self, value):
        return []

    def addInPlace(self, a, b):
        a.extend(b)
        return a


def spark_track_schema():
    """:data:`local.dataset_store.TRACK_SCHEMA` as a Spark schema (so the Parquet columns are the same)."""
    from pyspark.sql.pandas.types import from_arrow_schema
    return from_arrow_schema(store.TRACK_SCHEMA)


def read_files(spark, raw_dir, columns):
    """Spark's binaryFile DataFrame of every file below ``raw_dir`` (hidden ``.``/``_`` names excluded)."""
    return (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(raw_dir)
            .select(*columns))


def list_raw_inputs(spark, raw_dir, stage_dir):
    """The inputs exactly as :func:`local.preprocessing.list_inputs` finds them, for a folder or a URI.

    Returns (inputs, keys, listed): ``keys`` maps each input's ``path`` to the qualified path Spark lists it
    under; ``listed`` is the set of qualified paths that exist.
    """
    root = spark_io.qualify(spark, raw_dir)
    listed = {r.path for r in read_files(spark, raw_dir, ["path"]).collect()}
    keys = {}

    def join(relative):
        path = spark_io.join(raw_dir, *relative.split("/"))
        keys[path] = f"{root}/{relative}"
        return path

    local_manifest = spark_io.fetch(spark, spark_io.join(raw_dir, manifest.MANIFEST_NAME), stage_dir)
    rows = manifest.read_manifest(os.path.dirname(local_manifest)) if local_manifest else {}
    if rows:
        inputs = preprocessing.inputs_from_manifest(rows.values(), join)
    else:
        relative = sorted(p[len(root) + 1:] for p in listed if p.startswith(root + "/"))
        inputs = preprocessing.inputs_from_files(relative, join)
    return inputs, keys, listed


def hash_files(spark, raw_dir, wanted_keys):
    """{qualified path: sha256} of the ``wanted_keys`` files, hashed on the executors."""
    from pyspark.sql.functions import broadcast
    if not wanted_keys:
        return {}
    wanted = spark.createDataFrame([(k,) for k in wanted_keys], "path string")
    files = read_files(spark, raw_dir, ["path", "content"]).join(broadcast(wanted), "path")
    return dict(files.rdd.map(lambda r: (r.path, hashlib.sha256(r.content).hexdigest())).collect())


def decode_partition(rows, settings, genres, events):
    """Executor side: (item JSON, file bytes) rows -> dataset rows; failures, warnings and each file's
    decoding time (seconds of one core) go to ``events``. ``settings``: DecodeSettings."""
    for batch in preprocessing.batches(rows, lambda row: len(row.content)):  # one ffmpeg per batch
        started = time.perf_counter()
        outcomes = preprocessing.process_batch([json.loads(row.item) for row in batch], settings,
                                               datas=[bytes(row.content) for row in batch])
        seconds = (time.perf_counter() - started) / len(batch)  # core-seconds per file, for sizing
        for item, track, reason in outcomes:
            events.add([("seconds", item["path"], seconds)])
            if track is None:
                events.add([("failed", item["path"], reason)])
                continue
            if track["warning"]:
                events.add([("warning", item["path"], track["warning"])])
            yield preprocessing.track_row(item, track, genres, settings.sample_rate)


def read_existing_index(spark, out_dir):
    """The dataset's index rows (no codes) and whether it has parts; through pyarrow locally, Spark otherwise."""
    if not spark_io.is_uri(out_dir):
        return store.read_index(out_dir)
    if not spark_io.glob(spark, spark_io.join(out_dir, "tracks", "part-*.parquet")):
        return []
    from pyspark.sql.functions import input_file_name
    frame = spark.read.parquet(spark_io.join(out_dir, "tracks"))
    columns = [c for c in store.INDEX_COLUMNS if c in frame.columns]
    rows = frame.select(*columns, input_file_name().alias("part")).collect()
    return [r.asDict() for r in rows]


def drop_tracks(spark, out_dir, track_ids, index):
    """Remove the rows of ``track_ids`` from the dataset before their new rows are written.

    Local folders: :func:`local.dataset_store.drop_tracks` (atomic per part). Elsewhere each affected part is
    rewritten by Spark under a ``_``-hidden folder, the old part deleted, the new one renamed into place;
    a kill in between loses rows of that part, which the next run finds missing and processes again.
    """
    if not spark_io.is_uri(out_dir):
        store.drop_tracks(out_dir, track_ids)
        return
    from pyspark.sql.functions import col
    jvm = spark.sparkContext._jvm
    track_ids = set(track_ids)
    for part in sorted({r["part"] for r in index if r["track_id"] in track_ids}):
        staging = spark_io.join(out_dir, "tracks", f"_rewrite-{os.path.basename(part)}")
        kept = spark.read.parquet(part).filter(~col("track_id").isin(list(track_ids)))
        kept.coalesce(1).write.mode("overwrite").option("compression", "zstd").parquet(staging)
        spark_io.delete(spark, part)
        fs, _ = spark_io.hadoop_fs(spark, staging)
        for new_part in spark_io.glob(spark, spark_io.join(staging, "part-*.parquet")):
            fs.rename(jvm.org.apache.hadoop.fs.Path(new_part),
                      jvm.org.apache.hadoop.fs.Path(spark_io.join(out_dir, "tracks", os.path.basename(new_part))))
        fs.delete(jvm.org.apache.hadoop.fs.Path(staging), True)


def quiet_parquet_writer(spark):
    """Silence parquet-mr's "Too much memory used" dump: one track per row group is what we ask for."""
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.parquet.hadoop.InternalParquetRecordWriter", jvm.org.apache.logging.log4j.Level.ERROR)


def file_partition_conf(spark, total_bytes, partitions):
    """SQL settings that make the binaryFile scan come in about ``partitions`` tasks of equal bytes.

    The scan packs whole files into splits of min(maxPartitionBytes, total / minPartitionNum) bytes, each
    file costing its length plus openCostInBytes; a small open cost and a split of total / partitions give
    about ``partitions`` tasks, so every core gets work and a slow file delays only its own task.
    """
    return {"spark.sql.files.maxPartitionBytes": str(max(1, total_bytes // max(1, partitions) + 1)),
            "spark.sql.files.openCostInBytes": "1",
            "spark.sql.files.minPartitionNum": str(max(1, partitions))}


def preprocess_spark(spark, raw_dir, out_dir, *, partitions=0, **dataset_keys):
    """Stage 2 on a running SparkSession: :func:`local.preprocessing.preprocess`'s result, computed on executors.

    ``raw_dir`` and ``out_dir`` are local folders or URIs (file://, hdfs://, s3://); ``dataset_keys`` are stage 2's
    dataset keys as :func:`local.preprocessing.preprocess` takes them; ``partitions`` = 0 means 4 tasks per
    core. Returns the same summary dict as the local stage, plus ``decode_core_seconds``: the executors' time
    spent decoding (one core each), which is what a cluster of N cores divides by N.
    """
    settings, splits = preprocessing.stage_settings(**dataset_keys)
    with spark_io.LocalStage() as stage_dir:
        info = (store.read_dataset_json(stage_dir)
                if spark_io.fetch(spark, spark_io.join(out_dir, "dataset.json"), stage_dir) else None) or {}
        index = read_existing_index(spark, out_dir)
        preprocessing.check_same_settings(out_dir, info, index, settings)
        if not spark_io.is_uri(out_dir):
            store.remove_stale_temps(out_dir)
        inputs, keys, listed = list_raw_inputs(spark, raw_dir, stage_dir)
        existing = {r["track_id"] for r in index}
        known = [i for i in inputs if i["track_id"] in existing and not i["sha256"] and keys[i["path"]] in listed]
        hashes = hash_files(spark, raw_dir, [keys[i["path"]] for i in known])
        plan = preprocessing.plan_tracks(inputs, index, info.get("genres", []), splits,
                                         lambda item: item["sha256"] or hashes.get(keys[item["path"]], ""))
        if plan["changed"]:
            drop_tracks(spark, out_dir, plan["changed"], index)

        failed = [(i["path"], preprocessing.MISSING_REASON) for i in plan["todo"] if keys[i["path"]] not in listed]
        todo = [i for i in plan["todo"] if keys[i["path"]] in listed]
        warnings, executor_failed, decode_seconds = [], {}, {}
        if todo:
            events = decode_into_dataset(spark, raw_dir, out_dir, [(keys[i["path"]], i) for i in todo],
                                         settings, plan["genres"], partitions)
            # a retried task reports its events again: one entry per path
            executor_failed = {path: text for kind, path, text in events if kind == "failed"}
            failed += sorted(executor_failed.items())
            warnings = sorted({path: text for kind, path, text in events if kind == "warning"}.items())
            decode_seconds = {path: value for kind, path, value in events if kind == "seconds"}

        dataset = preprocessing.dataset_info(read_existing_index(spark, out_dir), plan["genres"], settings, splits)
        for path in store.write_dataset_files(stage_dir, dataset, failed):
            spark_io.publish(spark, path, spark_io.join(out_dir, os.path.basename(path)))
    return {"processed": len(todo) - len(executor_failed), "skipped": plan["skipped"], "failed": failed,
            "warnings": warnings, "dataset": dataset, "out_dir": out_dir,
            "failures_csv": spark_io.join(out_dir, "failures.csv"),
            "decode_core_seconds": float(sum(decode_seconds.values()))}


def decode_into_dataset(spark, raw_dir, out_dir, todo, settings, genres, partitions):
    """Decode the ``todo`` files on the executors and append their rows to ``<out_dir>/tracks``.

    ``todo``: (qualified path as Spark lists it, input dict) pairs. Returns the executors' events:
    (kind, path, text or seconds) with kind failed, warning or seconds (see :func:`decode_partition`).
    """
    from pyspark.sql.functions import broadcast

    events = spark.sparkContext.accumulator([], ListParam())
    items = spark.createDataFrame([(key, json.dumps(item)) for key, item in todo], "path string, item string")
    partitions = partitions or 4 * spark.sparkContext.defaultParallelism
    total_bytes = sum(int(r.length) for r in read_files(spark, raw_dir, ["path", "length"])
                      .join(broadcast(items.select("path")), "path").collect())
    quiet_parquet_writer(spark)
    saved = {k: spark.conf.get(k, None) for k in file_partition_conf(spark, 1, 1)}
    for k, v in file_partition_conf(spark, total_bytes, partitions).items():
        spark.conf.set(k, v)
    try:
        pairs = read_files(spark, raw_dir, ["path", "content"]).join(broadcast(items), "path")
        rows = pairs.select("item", "content").rdd.mapPartitions(
            lambda part: decode_partition(part, settings, genres, events))
        (spark.createDataFrame(rows, spark_track_schema()).write.mode("append")
         .option("compression", "zstd")
         .option("parquet.block.size", 1)  # with a size check after every row: one track per group
         .option("parquet.page.size.row.check.min", 1)
         .option("parquet.page.size.row.check.max", 1)
         .parquet(spark_io.join(out_dir, "tracks")))
    finally:
        for k, v in saved.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)
    return events.value
