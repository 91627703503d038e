"""A real Spark standalone cluster on 127.0.0.1 (a master and workers in their own JVMs), and the demo on it.

The master and workers are pyspark's own launch classes (``spark-class org.apache.spark.deploy.master.Master``
and ``...worker.Worker`` from the installed pyspark package: nothing to download). Jobs go in as on EMR:
``spark-submit --master spark://127.0.0.1:PORT --py-files waveforms.zip`` (the zip aws/emr.py builds), and the
executors run in the workers' own folders with no PYTHONPATH, so their Python workers import the project from
the zip and never from the driver's working directory.

aws/cluster_demo.py (``make cluster-demo``) and the tests' cluster fixture both use it::

    with StandaloneCluster(work_dir, workers=2) as cluster:
        submit(cluster, "aws/spark_preprocessing.py", ["--raw_dir=...", "--out_dir=..."])
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 120  # the JVMs start in 5-15 s on 2 busy cores; more means something is wrong


class ClusterError(RuntimeError):
    """The cluster could not start or a job on it failed; the message says which and where its log is."""


def spark_home():
    """The installed pyspark package: it holds bin/spark-class, bin/spark-submit and the jars."""
    import pyspark
    return os.path.dirname(os.path.abspath(pyspark.__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOG4J2 = """rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
"""


def daemon_env(work_dir, log_level="info"):
    """The environment of the JVMs started here: loopback only, small daemons, this Python for PySpark, a conf
    folder of our own (log4j2 at ``log_level``) and no PYTHONPATH, so nothing of the driver's checkout leaks
    into the executors."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_CONF_DIR", "SPARK_HOME")}
    conf_dir = os.path.join(work_dir, f"conf-{log_level}")
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "log4j2.properties"), "w") as f:
        f.write(LOG4J2.format(level=log_level))
    env.update({"SPARK_HOME": spark_home(), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_CONF_DIR": conf_dir,
                "SPARK_DAEMON_MEMORY": "256m",  # a master or worker daemon needs little; executors get their own
                "PYSPARK_PYTHON": sys.executable})
    return env


class StandaloneCluster:
    """A standalone master and ``workers`` workers (``worker_cores`` cores, ``worker_memory`` each) on 127.0.0.1.

    ``port`` 0 picks a free one. Logs go to ``work_dir/logs``; the executors run in ``work_dir/worker-N``.
    Use as a context manager, or call :meth:`start` and :meth:`stop` (which kills every JVM it started).
    """

    def __init__(self, work_dir, workers=2, worker_cores=1, worker_memory="1g", port=0):
        self.work_dir = os.path.abspath(work_dir)
        self.workers, self.worker_cores, self.worker_memory = workers, worker_cores, worker_memory
        self.port = port or free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.ui_port = free_port()
        self.processes = []

    def launch(self, name, java_class, args):
        os.makedirs(os.path.join(self.work_dir, "logs"), exist_ok=True)
        log = open(os.path.join(self.work_dir, "logs", f"{name}.log"), "ab")
        # its own session: a Ctrl-C reaches this process, whose stop() then ends the JVMs in order
        process = subprocess.Popen([os.path.join(spark_home(), "bin", "spark-class"), java_class, *args],
                                   cwd=self.work_dir, env=daemon_env(self.work_dir), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.processes.append((name, process))
        return process

    def start(self):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) == 0:
                raise ClusterError(f"port {self.port} on 127.0.0.1 is taken (another Spark master?): "
                                   f"stop it or pass --port=ANOTHER")
        try:
            self.launch("master", "org.apache.spark.deploy.master.Master",
                        ["--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port)])
            for k in range(self.workers):
                worker_dir = os.path.join(self.work_dir, f"worker-{k}")
                os.makedirs(worker_dir, exist_ok=True)
                self.launch(f"worker-{k}", "org.apache.spark.deploy.worker.Worker",
                            ["--host", "127.0.0.1", "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                             "--work-dir", worker_dir, "--webui-port", str(free_port()), self.master_url])
            self.wait_for_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def status(self):
        """The master's JSON status (``aliveworkers``, ``activeapps``, ...), or None while it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def wait_for_workers(self, timeout_s=START_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, process in self.processes:
                if process.poll() is not None:
                    raise ClusterError(f"the {name} JVM exited ({process.returncode}) while starting: see "
                                       f"{os.path.join(self.work_dir, 'logs', name + '.log')}")
            status = self.status()
            if status and status.get("aliveworkers", 0) >= self.workers:
                return status
            time.sleep(0.5)
        raise ClusterError(f"{self.workers} workers did not register with {self.master_url} within {timeout_s} s: "
                           f"see {os.path.join(self.work_dir, 'logs')}")

    def stop(self):
        """Stop the workers, then the master (SIGTERM, then SIGKILL after 20 s); their executors go with them."""
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # an executor JVM that outlived its worker (it should not) would keep a core: end our sessions' leftovers
        for name, process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.processes = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def write_code_zip(path):
    """The zip aws/emr.py ships as ``--py-files`` (the ``local`` and ``aws`` packages); return its path."""
    from aws.emr_cluster import code_zip
    from local.fileio import write_bytes_atomic
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return write_bytes_atomic(path, code_zip(ROOT))


def submit(cluster, script, args, code_zip=None, executor_memory="768m", timeout_s=None, capture=False):
    """``spark-submit --master <cluster> --py-files <code_zip> <script> <args>``; return the CompletedProcess.

    ``script`` is relative to the project (aws/spark_preprocessing.py); the driver runs here (client mode)
    with PYSPARK_PYTHON set to this Python, which the executors then run too. ``capture`` keeps the output
    (the tests read it) instead of showing it.
    """
    code_zip = code_zip or write_code_zip(os.path.join(cluster.work_dir, "waveforms.zip"))
    env = dict(daemon_env(cluster.work_dir, "warn"), PYSPARK_DRIVER_PYTHON=sys.executable,
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    command = [os.path.join(spark_home(), "bin", "spark-submit"), "--master", cluster.master_url,
               "--py-files", code_zip, "--executor-memory", executor_memory,
               "--total-executor-cores", str(cluster.workers * cluster.worker_cores),
               "--conf", "spark.executor.cores=1", "--conf", "spark.driver.host=127.0.0.1",
               "--conf", "spark.driver.bindAddress=127.0.0.1", "--conf", "spark.ui.enabled=false",
               "--conf", f"spark.executorEnv.TF_CPP_MIN_LOG_LEVEL={env['TF_CPP_MIN_LOG_LEVEL']}",
               os.path.join(ROOT, script), *args]
    pipe = subprocess.PIPE if capture else None
    # its own process group, ended as a whole (the JVM and its Python driver) on Ctrl-C, a kill or a timeout
    process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=pipe, stderr=pipe,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except BaseException:
        end_process_group(process)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def end_process_group(process, grace_s=20):
    """SIGTERM to ``process``'s group (it was started in a session of its own), SIGKILL after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
