"""Stage 2 on Spark: the files are read by Spark's binaryFile source and decoded on the executors by the very
functions the local stage uses (:func:`local.audio.decoding.process_batch`), so the codes are the same bytes.

The driver only lists files and plans (splits, genre ids: :func:`local.dataset.build.plan_tracks`); audio
is never collected on it. Executors return rows of :data:`local.store.dataset_files.TRACK_SCHEMA`, which Spark
writes as ``<out_dir>/tracks/part-*.parquet`` (visible only once the job commits); then ``dataset.json`` and
``failures.csv`` are written as the local stage writes them.
"""
import contextlib
import hashlib
import json
import os
import posixpath
import re
import time

from pyspark.accumulators import AccumulatorParam

from aws import spark_io
from local.audio import decoding
from local.core import locks
from local.dataset import build
from local.dataset import inputs as dataset_inputs
from local.dataset import settings as dataset_settings
from local.dataset.splits import resplit_usable
from local.store import dataset_files as store
from local.store import manifest
from local.store.layout import DatasetDir

UNREAD_REASON = ("not read: Spark's file source skips names starting with '_' or '.' (rename the file), "
                 "or the file changed while the job ran (run it again)")


NEW_ROWS_DIR = "_new_tracks"  # where the job writes its rows before their genre ids are final


class ListParam(AccumulatorParam):
    """An accumulator of lists: the (kind, path, value) events of the executors (failures, warnings, decoders,
    seconds)."""

    def zero(self, value):
        return []

    def addInPlace(self, a, b):
        a.extend(b)
        return a


def spark_track_schema():
    """:data:`local.store.dataset_files.TRACK_SCHEMA` as a Spark schema (so the Parquet columns are the same)."""
    from pyspark.sql.pandas.types import from_arrow_schema
    return from_arrow_schema(store.TRACK_SCHEMA)


def read_files(spark, raw_dir, columns):
    """Spark's binaryFile DataFrame of every file below ``raw_dir`` (hidden ``.``/``_`` names excluded)."""
    return (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(raw_dir)
            .select(*columns))


def list_raw_inputs(spark, raw_dir, stage_dir):
    """The inputs exactly as :func:`local.dataset.inputs.list_inputs` finds them, for a folder or a URI.

    Returns (inputs, keys, listed): ``keys`` maps each input's ``path`` to the qualified path Spark lists it
    under; ``listed`` maps the qualified path of every file that exists, empty ones included, to its size.
    """
    root = spark_io.qualify(spark, raw_dir)
    listed = spark_io.list_files(spark, raw_dir)  # binaryFile's own listing drops empty and "_"-named files
    keys = {}

    def join(relative):
        path = spark_io.join(raw_dir, *relative.split("/"))
        keys[path] = f"{root}/{relative}"
        return path

    local_manifest = spark_io.fetch(spark, spark_io.join(raw_dir, manifest.MANIFEST_NAME), stage_dir)
    replaced = []
    rows = manifest.read_manifest(os.path.dirname(local_manifest), replaced) if local_manifest else {}
    if local_manifest and not rows:  # a manifest listing nothing must not give way to a folder scan unseen
        raise ValueError(manifest.listed_nothing_problem(os.path.dirname(local_manifest), rows)
                         .replace(os.path.dirname(local_manifest), raw_dir))
    if rows:
        inputs = dataset_inputs.inputs_from_manifest(rows.values(), join, replaced)
    else:
        relative = sorted(p[len(root) + 1:] for p in listed if p.startswith(root + "/"))
        inputs = dataset_inputs.inputs_from_files(relative, join)
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
    for batch in build.batches(rows, lambda row: len(row.content)):  # one ffmpeg per batch
        started = time.perf_counter()
        outcomes = decoding.process_batch([json.loads(row.item) for row in batch], settings,
                                               datas=[bytes(row.content) for row in batch])
        seconds = (time.perf_counter() - started) / len(batch)  # core-seconds per file, for sizing
        for item, track, reason in outcomes:
            events.add([("seconds", item["path"], seconds)])
            if track is None:
                events.add([("failed", item["path"], reason)])
                continue
            if track["warning"]:
                events.add([("warning", item["path"], track["warning"])])
            events.add([("decoder", item["path"], track.get("decoder", ""))])  # e.g. the libsndfile fallback
            yield build.track_row(item, track, genres, settings.sample_rate)


def read_existing_index(spark, out_dir):
    """The dataset's index rows (no codes) and whether it has parts; through pyarrow locally, Spark otherwise."""
    if not spark_io.is_uri(out_dir):
        return store.read_index(out_dir, columns=dataset_settings.INDEX_WITH_RATE)
    if not spark_io.glob(spark, spark_io.join(out_dir, "tracks", "part-*.parquet")):
        return []
    from pyspark.sql.functions import input_file_name
    frame = spark.read.parquet(spark_io.join(out_dir, DatasetDir.TRACKS))
    columns = [c for c in dataset_settings.INDEX_WITH_RATE if c in frame.columns]
    rows = frame.select(*columns, input_file_name().alias("part")).collect()
    return [r.asDict() for r in rows]


def drop_tracks(spark, out_dir, track_ids, index):
    """Remove the rows of ``track_ids`` from the dataset before their new rows are written.

    Local folders: :func:`local.store.dataset_files.drop_tracks` (atomic per part). Elsewhere each affected part is
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


def write_tracks(frame, uri):
    """Append the rows of ``frame`` as Parquet parts under ``uri``, one track per row group as the local writer."""
    (frame.write.mode("append").option("compression", "zstd")
     .option("parquet.block.size", 1)  # with a size check after every row: one track per group
     .option("parquet.page.size.row.check.min", 1)
     .option("parquet.page.size.row.check.max", 1)
     .parquet(uri))


def move_new_rows(spark, staging, out_dir, written_genres, genres, moves=None):
    """Put the rows the job wrote to ``staging`` (with ids from ``written_genres``) into ``out_dir/tracks``.

    When every kept genre has the id it was written with and no split moves (the usual case) the part files
    are renamed into place; otherwise (a new genre kept no track; ``moves`` {track_id: split}: planned
    valid/test tracks failed to decode, :func:`local.dataset.splits.resplit_usable`) the new rows are
    rewritten once with their ``genres`` ids and splits.
    Each part appears complete or not at all; a kill in between leaves rows a rerun finds missing and redoes.
    """
    from pyspark.sql import functions as F
    tracks = spark_io.join(out_dir, DatasetDir.TRACKS)
    parts = spark_io.glob(spark, spark_io.join(staging, "part-*.parquet"))
    if parts and (written_genres[:len(genres)] != genres or moves):
        ids = F.create_map(*[F.lit(v) for i, genre in enumerate(genres) for v in (genre, i)])
        frame = spark.read.parquet(staging)
        edited = frame.withColumn("genre_id", ids[F.col("genre")].cast("int"))
        if moves:
            moved = F.create_map(*[F.lit(v) for item in sorted(moves.items()) for v in item])
            edited = edited.withColumn("split", F.coalesce(moved[F.col("track_id")], F.col("split")))
        write_tracks(edited.select(*frame.columns), tracks)
    elif parts:
        jvm = spark.sparkContext._jvm
        fs, _ = spark_io.hadoop_fs(spark, tracks)
        fs.mkdirs(jvm.org.apache.hadoop.fs.Path(tracks))
        for part in parts:
            name = part.rsplit("/", 1)[-1]
            fs.rename(jvm.org.apache.hadoop.fs.Path(part), jvm.org.apache.hadoop.fs.Path(spark_io.join(tracks, name)))
            checksum = jvm.org.apache.hadoop.fs.Path(spark_io.join(staging, f".{name}.crc"))
            if fs.exists(checksum):  # a raw file system leaves Hadoop's checksum behind: it goes with its part
                fs.rename(checksum, jvm.org.apache.hadoop.fs.Path(spark_io.join(tracks, f".{name}.crc")))
    remove_tree(spark, staging)


def remove_tree(spark, uri):
    fs, path = spark_io.hadoop_fs(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


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


def input_problem(raw_dir, path):
    """:func:`local.dataset.inputs.input_path_problem` for the Spark job: the same reason for a local raw_dir (or a
    file: URI); for another URI, a path that leaves ``raw_dir`` once its ``..`` are resolved."""
    if not spark_io.is_uri(raw_dir) or raw_dir.startswith("file:"):
        local_root = raw_dir[len("file:"):] if raw_dir.startswith("file:") else raw_dir
        local_path = path[len("file:"):] if path.startswith("file:") else path
        return dataset_inputs.input_path_problem(re.sub("^//+", "/", local_root), re.sub("^//+", "/", local_path))
    scheme, _, root = raw_dir.partition("://")
    resolved = posixpath.normpath(path.partition("://")[2])
    if resolved != posixpath.normpath(root) and not resolved.startswith(posixpath.normpath(root) + "/"):
        return dataset_inputs.outside_raw_dir_reason(f"{scheme}://{resolved}")
    return ""


def read_part_settings(spark, out_dir, stage_dir, index):
    """(part metadatas, sidecar dict) for :func:`local.dataset.settings.check_same_settings`: a local out_dir's
    parts are read by pyarrow; a URI's parts, whose footers the driver does not fetch, count as parts
    without metadata, so the sidecar (then dataset.json) speaks for them."""
    local = spark_io.fetch(spark, spark_io.join(out_dir, "tracks", dataset_settings.SETTINGS_SIDECAR), stage_dir)
    recorded = dataset_settings.read_settings_sidecar(local) if local else None
    if not spark_io.is_uri(out_dir):
        metadatas = [store.open_part(part).schema_arrow.metadata for part in store.list_parts(out_dir)]
    else:
        metadatas = [None] if index else []
    return metadatas, recorded


def preprocess_spark(spark, raw_dir, out_dir, *, partitions=0, **dataset_keys):
    """Stage 2 on a running SparkSession: :func:`local.dataset.build.preprocess`'s result, computed on executors.

    ``raw_dir`` and ``out_dir`` are local folders or URIs (file://, hdfs://, s3://); ``dataset_keys`` are stage 2's
    dataset keys as :func:`local.dataset.build.preprocess` takes them; ``partitions`` = 0 means 4 tasks per
    core. The local stage's rules hold: every input not used is in failures.csv with the local reason (empty
    files and those outside raw_dir included), "unchanged" is decided from the file's bytes (never the
    manifest's sha256), the settings are checked against the rows', and only genres with a kept track get an
    id. Returns the same summary dict as the local stage, plus ``decode_core_seconds``: the executors' time
    spent decoding (one core each), which is what a cluster of N cores divides by N.

    One writer per out_dir, as on the local stage: a local (or file:) ``out_dir`` is locked with the local
    stage's lock (:mod:`local.core.locks`, the same file, so a local and a Spark stage 2 refuse each other too); a
    second writer gets :class:`local.core.locks.LockHeld`, one line (:func:`out_dir_lock`).
    """
    with out_dir_lock(out_dir):
        return preprocess_spark_unlocked(spark, raw_dir, out_dir, partitions=partitions, **dataset_keys)


def out_dir_lock(out_dir):
    """The local stage's lock on a local (or ``file:``) ``out_dir`` (:func:`local.core.locks.acquire_lock`, "stage 2":
    the same file, so a local and a Spark stage 2 refuse each other too), as a context manager; raises
    :class:`local.core.locks.LockHeld` while another live process holds it. An hdfs:// or s3:// out_dir is not
    locked: a flock reaches no other machine and S3 has no lock, so two jobs on one remote out_dir are the
    caller's to avoid."""
    if spark_io.is_uri(out_dir) and not out_dir.startswith("file:"):
        return contextlib.nullcontext()
    return locks.acquire_lock(out_dir[len("file:"):] if out_dir.startswith("file:") else out_dir, "stage 2")


def preprocess_spark_unlocked(spark, raw_dir, out_dir, *, partitions=0, on_checked=None, **dataset_keys):
    """:func:`preprocess_spark` for a caller that holds :func:`out_dir_lock`; ``on_checked()`` (the runner saving
    its config.json) is called once ``out_dir`` is known to take these settings, before anything is written."""
    settings, splits = dataset_settings.stage_settings(**dataset_keys)
    with spark_io.LocalStage() as stage_dir:
        try:
            info = (store.read_dataset_json(stage_dir)
                    if spark_io.fetch(spark, spark_io.join(out_dir, DatasetDir.DATASET_JSON), stage_dir) else None) or {}
        except store.DamagedFile:  # the rows are the truth: it is rewritten from them at the end
            info = {}
        index = read_existing_index(spark, out_dir)
        metadatas, recorded = read_part_settings(spark, out_dir, stage_dir, index)
        dataset_settings.check_same_settings(out_dir, info, index, settings, part_metadatas=metadatas, recorded=recorded)
        if on_checked is not None:
            on_checked()
        if not spark_io.is_uri(out_dir):
            store.remove_stale_temps(out_dir)
        inputs, keys, listed = list_raw_inputs(spark, raw_dir, stage_dir)
        inputs, failed = build.split_refused(raw_dir, inputs, lambda path: input_problem(raw_dir, path))
        existing = {r["track_id"] for r in index}
        # "unchanged" from the file's own bytes, hashed on the executors: a manifest's sha256 is never trusted
        known = [i for i in inputs if i["track_id"] in existing and keys[i["path"]] in listed]
        hashes = hash_files(spark, raw_dir, [keys[i["path"]] for i in known])
        plan = build.plan_tracks(inputs, index, info.get("genres", []), splits,
                                         lambda item: hashes.get(keys[item["path"]], ""))
        staging = spark_io.join(out_dir, NEW_ROWS_DIR)  # hidden from readers ("_"); a killed run's is dropped
        remove_tree(spark, staging)
        if plan["changed"]:
            drop_tracks(spark, out_dir, plan["changed"], index)

        failed += [(i["path"], decoding.MISSING_REASON) for i in plan["todo"] if keys[i["path"]] not in listed]
        todo = [i for i in plan["todo"] if keys[i["path"]] in listed]
        # Spark's file source never hands an empty file to a task: the local function gives its reason here
        empty = [i for i in todo if listed[keys[i["path"]]] == 0]
        failed += [(item["path"], reason) for item, _, reason in
                   decoding.process_batch(empty, settings, datas=[b""] * len(empty))] if empty else []
        todo = [i for i in todo if listed[keys[i["path"]]] > 0]
        genres = list(plan["genres"])  # + each new genre once it has a kept track (below)
        warnings, executor_failed, decode_seconds, unread, decoders = [], {}, {}, [], {}
        if todo:
            # ids as the local stage gives them: known genres, then new ones sorted (local.dataset.settings)
            written_genres = build.genres_with_data(genres, [i["genre"] for i in todo])
            write_settings_sidecar(spark, out_dir, stage_dir, settings)
            events = decode_into_dataset(spark, raw_dir, staging, [(keys[i["path"]], i) for i in todo], settings,
                                         written_genres, partitions=partitions,
                                         total_bytes=sum(listed[keys[i["path"]]] for i in todo))
            # a retried task reports its events again: one entry per path
            executor_failed = {path: text for kind, path, text in events if kind == "failed"}
            failed += sorted(executor_failed.items())
            warnings = sorted({path: text for kind, path, text in events if kind == "warning"}.items())
            decode_seconds = {path: value for kind, path, value in events if kind == "seconds"}
            # every input is accounted for: one the file source did not hand to any task is a failure too
            unread = [i["path"] for i in todo if i["path"] not in decode_seconds]
            failed += [(path, UNREAD_REASON) for path in unread]
            decoders = {path: text for kind, path, text in events if kind == "decoder"}
            # a genre none of whose tracks was kept gets no id (dataset.json lists genres with data only)
            genres = build.genres_with_data(genres, [i["genre"] for i in todo if i["path"] in decoders])
            # split as the local stage does: the usable tracks, not the planned ones (some failed to decode)
            moves = resplit_usable([i for i in todo if i["path"] in decoders],
                                   [r for r in index if r["track_id"] not in set(plan["changed"])], splits)
            move_new_rows(spark, staging, out_dir, written_genres, genres, moves)

        warnings = list(plan["same_audio"]) + warnings  # the same audio under two ids: kept in one split
        dataset = build.dataset_info(read_existing_index(spark, out_dir), genres, settings, splits)
        for path in store.write_dataset_files(stage_dir, dataset, failed):
            spark_io.publish(spark, path, spark_io.join(out_dir, os.path.basename(path)))
    return {"processed": len(todo) - len(executor_failed) - len(unread), "skipped": plan["skipped"],
            "failed": failed, "warnings": warnings, "dataset": dataset, "out_dir": out_dir,
            "failures_csv": spark_io.join(out_dir, DatasetDir.FAILURES),
            "decode_core_seconds": float(sum(decode_seconds.values())),
            "decoded_with_libsndfile": sum(d == decoding.LIBSNDFILE for d in decoders.values())}


def write_settings_sidecar(spark, out_dir, stage_dir, settings):
    """Record the settings of the parts this job writes (:data:`local.dataset.settings.SETTINGS_SIDECAR`): Spark's
    Parquet writer sets no key-value metadata, so the rows' settings are kept beside them."""
    from local.core.fileio import write_json_atomic
    local = write_json_atomic(os.path.join(stage_dir, dataset_settings.SETTINGS_SIDECAR),
                              dataset_settings.part_settings(settings))
    spark_io.publish(spark, local, spark_io.join(out_dir, "tracks", dataset_settings.SETTINGS_SIDECAR))


def decode_into_dataset(spark, raw_dir, rows_dir, todo, settings, genres, *, partitions, total_bytes):
    """Decode the ``todo`` files on the executors and append their rows as Parquet parts under ``rows_dir``.

    ``todo``: (qualified path as Spark lists it, input dict) pairs; ``total_bytes``: their size. Returns the
    executors' events: (kind, path, text or seconds) with kind failed, warning, decoder or seconds (see
    :func:`decode_partition`).
    """
    from pyspark.sql.functions import broadcast

    events = spark.sparkContext.accumulator([], ListParam())
    items = spark.createDataFrame([(key, json.dumps(item)) for key, item in todo], "path string, item string")
    partitions = partitions or 4 * spark.sparkContext.defaultParallelism
    quiet_parquet_writer(spark)
    saved = {k: spark.conf.get(k, None) for k in file_partition_conf(spark, 1, 1)}
    for k, v in file_partition_conf(spark, total_bytes, partitions).items():
        spark.conf.set(k, v)
    try:
        pairs = read_files(spark, raw_dir, ["path", "content"]).join(broadcast(items), "path")
        rows = pairs.select("item", "content").rdd.mapPartitions(
            lambda part: decode_partition(part, settings, genres, events))
        write_tracks(spark.createDataFrame(rows, spark_track_schema()), rows_dir)
    finally:
        for k, v in saved.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)
    return events.value
