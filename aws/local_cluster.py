"""A real Spark standalone cluster on 127.0.0.1 (a master and workers in their own JVMs), and the demo on it.

The master and workers are pyspark's own launch classes (``spark-class org.apache.spark.deploy.master.Master``
and ``...worker.Worker`` from the installed pyspark package: nothing to download). Jobs go in as on EMR:
``spark-submit --master spark://127.0.0.1:PORT --py-files waveforms.zip`` (the zip aws/emr.py builds), and the
executors run in the workers' own folders with no PYTHONPATH, so their Python workers import the project from
the zip and never from the driver's working directory.

aws/cluster_demo.py (``make cluster-demo``) and the tests' cluster fixture both use it::

    with StandaloneCluster(work_dir, workers=2) as cluster:
        submit(cluster, "aws/spark_preprocessing.py", ["--raw_dir=...", "--out_dir=..."])

The JVMs run in sessions of their own (a Ctrl-C reaches only the Python that started them, which then stops
them in order), so a kill -9 of that Python leaves them running. Their pids are kept in
``work_dir/cluster-processes.json`` while they run, and the next start on the same ``work_dir`` stops exactly
those processes (the same pid *and* start time, never another process that got the pid since) before it starts
its own. The work_dir is locked (local/core/locks.py) while a cluster runs, so a second start on it is refused and
never takes a live cluster for a leftover.
"""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 120  # the JVMs start in 5-15 s on 2 busy cores; more means something is wrong
STOP_GRACE_S = 20  # SIGTERM to SIGKILL; a worker stops its executors and exits in 1-3 s
PROCESSES_NAME = "cluster-processes.json"  # in work_dir: the process groups a running cluster started


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
        self.lock = None

    def launch(self, name, java_class, args):
        os.makedirs(os.path.join(self.work_dir, "logs"), exist_ok=True)
        env = daemon_env(self.work_dir)
        with open(os.path.join(self.work_dir, "logs", f"{name}.log"), "ab") as log, signals_held():
            # its own session: a Ctrl-C reaches this process, whose stop() then ends the JVMs in order
            process = subprocess.Popen([os.path.join(spark_home(), "bin", "spark-class"), java_class, *args],
                                       cwd=self.work_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            self.remember(name, process)
        return process

    def remember(self, name, process):
        """Keep ``process`` (the leader of a session of its own) in the list the next start stops if this
        Python dies before :meth:`stop`."""
        self.processes.append((name, process))
        self.write_processes()

    def forget(self, process):
        self.processes = [(name, p) for name, p in self.processes if p is not process]
        self.write_processes()

    def write_processes(self):
        from local.core.fileio import write_json_atomic
        records = [{"name": name, "pid": p.pid, "start_ticks": start_ticks(p.pid)} for name, p in self.processes]
        write_json_atomic(os.path.join(self.work_dir, PROCESSES_NAME), records)

    def start(self):
        from local.core.locks import LockHeld, acquire_lock
        try:
            self.lock = acquire_lock(self.work_dir, "a Spark standalone cluster")
        except LockHeld as e:
            raise ClusterError(str(e)) from None
        try:
            stopped = stop_leftovers(self.work_dir)
            if stopped:
                print(f"stopped {len(stopped)} processes a killed earlier run left ({', '.join(stopped)})", flush=True)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    raise ClusterError(f"port {self.port} on 127.0.0.1 is taken (another Spark master, not started "
                                       f"from {self.work_dir}?): stop it or pass --port=ANOTHER")
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
                process.wait(timeout=STOP_GRACE_S)
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
        if self.lock is not None:
            try:
                os.remove(os.path.join(self.work_dir, PROCESSES_NAME))
            except FileNotFoundError:
                pass
            self.lock.release()
            self.lock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def signals_held(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold Ctrl-C and SIGTERM while a child is started and recorded, then deliver them (once each, to the
    handlers that were there). One arriving inside ``Popen`` would raise there, after the fork, and lose the
    child: Popen returns nothing to stop. An ignored signal stays ignored (the child inherits that); outside
    the main thread nothing is held (Python runs handlers there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught, previous = [], {}
    for signum in signums:
        if signal.getsignal(signum) not in (signal.SIG_IGN, None):
            previous[signum] = signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def proc_stat(pid):
    """(state, process group, start time in clock ticks after boot) of process ``pid`` from /proc/PID/stat, or
    None when there is none. The pid with its start time names one process, never a later one given that pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name before ")" may hold spaces
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start_ticks(pid):
    stat = proc_stat(pid)
    return stat and stat[2]


def group_alive(pgid):
    """Whether a process that is not a zombie is in process group ``pgid``."""
    for name in os.listdir("/proc"):
        stat = proc_stat(name) if name.isdigit() else None
        if stat and stat[1] == pgid and stat[0] != "Z":
            return True
    return False


def ours(record):
    """Whether the process group of ``record`` ({"pid", "start_ticks"}) still runs and is the one we started:
    its leader is the very process (same start time), or the leader is gone and members of its group remain
    (Linux gives no new process a pid that is still some group's id)."""
    leader = proc_stat(record["pid"])
    if leader is not None and leader[2] != record["start_ticks"]:
        return False  # another process got the pid
    return group_alive(record["pid"])


def unlisted_jvm_groups(work_dir):
    """Records ({"name", "pid" = process group, "start_ticks"}) of the process groups of JVMs (or spark-submit /
    spark-class launcher scripts) whose command line names ``work_dir`` (our code zip, logs and scratch folders live there) - what a kill -9 between starting a
    JVM and listing it leaves (measured once in a full test run: a spark-submit started as the demo was
    killed)."""
    folder = os.path.realpath(work_dir)
    records, own_group = {}, os.getpgrp()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        stat = proc_stat(name)
        # a JVM, or spark-submit's launcher script before it execs its JVM (seen in a full test run: a kill
        # during that instant left a SparkSubmit JVM that appeared only after the next start's sweep)
        launcher = any(os.path.basename(arg) in ("spark-submit", "spark-class") for arg in argv[:2])
        if not stat or stat[0] == "Z" or stat[1] in (own_group, 0, 1) or not (
                "java" in os.path.basename(argv[0]) or launcher):
            continue
        if any(arg == folder or folder + os.sep in arg for arg in argv):
            records.setdefault(stat[1], {"name": f"an unlisted JVM (pid {name})", "pid": stat[1],
                                         "start_ticks": start_ticks(stat[1]) or -1})
    return list(records.values())


def stop_leftovers(work_dir, grace_s=STOP_GRACE_S, rescans=3):
    """Stop the process groups a cluster started from ``work_dir`` left when its Python was killed (the list it
    kept in ``work_dir``, and any JVM naming ``work_dir`` that a kill left unlisted), SIGTERM then SIGKILL after
    ``grace_s``; return their names. Call it holding the work_dir's lock: then whoever wrote the list is dead. A
    listed process that is not the one listed is left alone."""
    from local.core.fileio import read_json
    path = os.path.join(work_dir, PROCESSES_NAME)
    records = read_json(path, default=[])
    records = [r for r in (records if isinstance(records, list) else []) if isinstance(r, dict) and
               isinstance(r.get("pid"), int) and r["pid"] > 1 and isinstance(r.get("start_ticks"), int)]
    listed = {r["pid"] for r in records}
    stopped = stop_groups(records + [r for r in unlisted_jvm_groups(work_dir) if r["pid"] not in listed], grace_s)
    # A process caught in the middle of an exec shows an empty command line (spark-submit's launcher execs twice
    # on its way to its JVM; one was missed that way in 1 of 3 test runs): look again a few times.
    for _ in range(rescans):
        time.sleep(0.3)
        stopped += stop_groups(unlisted_jvm_groups(work_dir), grace_s)
    if os.path.exists(path):
        os.remove(path)
    return stopped


def stop_groups(records, grace_s):
    """SIGTERM each process group of ``records`` that is still :func:`ours`, SIGKILL what is left after
    ``grace_s``; return the names of those signalled."""
    stopped = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = [r for r in records if ours(r)]
        for record in running:
            try:
                os.killpg(record["pid"], sig)
                if sig == signal.SIGTERM:
                    stopped.append(f"{record.get('name', '?')} pid {record['pid']}")
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline:
            time.sleep(0.2)
            running = [r for r in running if ours(r)]
        if not running:
            break
    return stopped


def write_code_zip(path):
    """The zip aws/emr.py ships as ``--py-files`` (the ``local`` and ``aws`` packages); return its path."""
    from aws.emr_cluster import code_zip
    from local.core.fileio import write_bytes_atomic
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
    process = None
    try:
        with signals_held():
            # its own process group, ended as a whole (the JVM and its Python driver) on Ctrl-C, a kill or a timeout
            process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=pipe, stderr=pipe,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            cluster.remember(f"spark-submit {os.path.basename(script)}", process)  # a kill -9 here leaves it too
        stdout, stderr = process.communicate(timeout=timeout_s)
    except BaseException:
        if process is not None:
            end_process_group(process)
        raise
    finally:
        if process is not None:
            cluster.forget(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def end_process_group(process, grace_s=STOP_GRACE_S):
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
