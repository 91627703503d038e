"""Shared fixtures. Spark starts once per test run (about 20 s), only when a test asks for it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession shared by every test that needs one (UI off, loopback only)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("waveforms-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.executorEnv.PYTHONPATH", ROOT)
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A real Spark standalone cluster - a master and two 1-core workers in their own JVMs on 127.0.0.1, the
    one `make cluster-demo` starts (aws/local_cluster.py) - shared by the tests that spark-submit to it."""
    from aws.local_cluster import StandaloneCluster
    with StandaloneCluster(str(tmp_path_factory.mktemp("cluster")), workers=2, worker_cores=1,
                           worker_memory="1g") as cluster:
        yield cluster
