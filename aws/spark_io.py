"""Small files on any storage Spark can reach (a local folder, file://, hdfs://, s3://), from the driver.

A plain path (no ``scheme:``) is a local folder: the ``local/`` functions read and write it directly. A URI
goes through Hadoop's FileSystem API of the running SparkSession, so the job reaches exactly what its
executors reach (HDFS, EMRFS on EMR) with the cluster's own credentials. Files are copied through a local
temp folder, so the ``local/`` writers (dataset.json, failures.csv) are reused rather than rewritten.
"""
import os
import re
import shutil
import tempfile

from local.core import fileio
from local.store.layout import RunDir

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_uri(path):
    """True for ``scheme:...`` (file:, hdfs:, s3:, s3a:); False for a plain local path."""
    return bool(URI.match(path or ""))


def join(base, *names):
    """``base/name/...`` for a local path or a URI (URIs always use "/")."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *names])
    return os.path.join(base, *names)


def hadoop_fs(spark, uri):
    """(FileSystem, Path) of the JVM for ``uri``; the local file system without its .crc side files."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fs.getClass().getName() == "org.apache.hadoop.fs.LocalFileSystem":
        fs = fs.getRawFileSystem()  # Hadoop's checksummed local FS writes a .crc beside every file
    return fs, path


def qualify(spark, path):
    """The fully qualified form Spark uses in file listings (``file:/tmp/x``, ``hdfs://nn:8020/x``)."""
    fs, hpath = hadoop_fs(spark, path)
    return fs.makeQualified(hpath).toString().rstrip("/")


def exists(spark, path):
    if not is_uri(path):
        return os.path.exists(path)
    fs, hpath = hadoop_fs(spark, path)
    return bool(fs.exists(hpath))


def glob(spark, pattern):
    """Qualified paths matching a Hadoop glob pattern, sorted (local paths: Python's glob, same order)."""
    if not is_uri(pattern):
        import glob as pyglob
        return sorted(pyglob.glob(pattern))
    fs, hpath = hadoop_fs(spark, pattern)
    statuses = fs.globStatus(hpath) or []
    return sorted(s.getPath().toString() for s in statuses)


def list_files(spark, path):
    """{qualified path: size in bytes} of every file below ``path`` (recursive), as the driver's file system sees
    them. Unlike Spark's file sources, this listing keeps empty files and ``_``/``.``-named ones, so a job can
    account for every input it was given."""
    fs, root = hadoop_fs(spark, path)
    if not fs.exists(root):
        return {}
    files, sizes = fs.listFiles(root, True), {}
    while files.hasNext():
        status = files.next()
        sizes[status.getPath().toString()] = int(status.getLen())
    return sizes


def delete(spark, path):
    if not is_uri(path):
        if os.path.exists(path):
            os.remove(path)
        return
    fs, hpath = hadoop_fs(spark, path)
    fs.delete(hpath, False)


def fetch(spark, uri, local_dir):
    """Copy the file ``uri`` into ``local_dir`` (same name); return its local path, or None if it does not exist."""
    if not exists(spark, uri):
        return None
    target = os.path.join(local_dir, uri.rstrip("/").rsplit("/", 1)[-1])
    if is_uri(uri):
        fs, hpath = hadoop_fs(spark, uri)
        jvm = spark.sparkContext._jvm
        fs.copyToLocalFile(False, hpath, jvm.org.apache.hadoop.fs.Path(target), True)
    else:
        shutil.copyfile(uri, target)
    return target


def publish(spark, local_file, uri):
    """Put ``local_file`` at ``uri``: under a hidden temp name first, then renamed, so no reader sees half a file.

    A local path goes through :func:`local.core.fileio.atomic_path`; a URI through Hadoop's FileSystem with the
    same temp name pattern. On S3 a rename is a copy, but the object appears complete or not at all either way.
    """
    if not is_uri(uri):
        with fileio.atomic_path(uri) as tmp:
            shutil.copyfile(local_file, tmp)
        return uri
    jvm = spark.sparkContext._jvm
    fs, target = hadoop_fs(spark, uri)
    tmp = jvm.org.apache.hadoop.fs.Path(target.getParent(), os.path.basename(fileio.temp_path_for(target.getName())))
    fs.mkdirs(target.getParent())
    fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(os.path.abspath(local_file)), tmp)
    if fs.exists(target):
        fs.delete(target, False)  # Hadoop's rename never replaces a file
    if not fs.rename(tmp, target):
        raise OSError(f"could not rename {tmp.toString()} to {uri}")
    return uri


class LocalStage:
    """A temp folder on the driver for files on their way to or from ``uri`` storage (removed on exit)."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="waveforms-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def start_spark(app_name, master="", conf=None):
    """The job's SparkSession. ``master`` "" = what spark-submit set, or ``local[*]`` under plain ``python``;
    the active session when there is one (a notebook, the tests).

    In local mode everything binds to 127.0.0.1 and the executors run this Python with the project on their
    path; on a cluster those come from spark-submit (``--py-files``, ``PYSPARK_PYTHON`` from bootstrap.sh).
    """
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # set by spark-submit for the Python driver
    if not master and not under_submit:
        master = "local[*]"
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    active = SparkSession.getActiveSession()
    if active is not None:  # a notebook's or a test's session: use it, and leave stopping it to its owner
        active.waveforms_borrowed = True
        return active
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if master.startswith("local"):
        builder = (builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.executorEnv.PYTHONPATH", root))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def stop_spark(spark):
    """Stop the session :func:`start_spark` started (a borrowed one is left running)."""
    if not getattr(spark, "waveforms_borrowed", False):
        spark.stop()


def fetch_tree(spark, uri, local_dir):
    """Copy every file below ``uri`` into ``local_dir`` (same relative paths); nothing if ``uri`` is absent."""
    if not exists(spark, uri):
        return
    fs, root = hadoop_fs(spark, uri)
    root_text = fs.makeQualified(root).toString().rstrip("/")
    files = fs.listFiles(root, True)
    jvm = spark.sparkContext._jvm
    while files.hasNext():
        path = files.next().getPath()
        relative = path.toString()[len(root_text) + 1:]
        if any(part in ("", ".", "..") for part in relative.split("/")):
            continue  # a name that would land outside local_dir is never written
        target = os.path.join(local_dir, *relative.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.copyToLocalFile(False, path, jvm.org.apache.hadoop.fs.Path(target), True)


def publish_tree(spark, local_dir, uri, last_names=(RunDir.CHECKPOINT_STATE,)):
    """Publish every file below ``local_dir`` to ``uri`` (each atomically, ``last_names`` after the others,
    so a checkpoint folder is complete once its state.json is there); hidden temp files are skipped."""
    files = []
    for root, dirs, names in os.walk(local_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(root, n) for n in names if not n.startswith(".") and ".tmp-" not in n]
    files.sort(key=lambda p: (os.path.basename(p) in last_names, p))
    for path in files:
        relative = os.path.relpath(path, local_dir).split(os.sep)
        publish(spark, path, join(uri, *relative))


def remove_folders_except(spark, uri, keep_names, prefix=""):
    """Delete the folders directly below ``uri`` named ``prefix``... whose names are not in ``keep_names``
    (with everything in them); return the names deleted. Nothing happens when ``uri`` does not exist."""
    fs, root = hadoop_fs(spark, uri)
    if not fs.exists(root):
        return []
    deleted = []
    for status in fs.listStatus(root):
        name = status.getPath().getName()
        if status.isDirectory() and name.startswith(prefix) and name not in set(keep_names):
            fs.delete(status.getPath(), True)
            deleted.append(name)
    return sorted(deleted)
