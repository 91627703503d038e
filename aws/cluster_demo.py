"""The demo on a real Spark standalone cluster (``make cluster-demo``): start a master and two workers on
127.0.0.1 (aws/local_cluster.py), submit stage 2 (aws/spark_preprocessing.py) and the Elephas stage 3
(aws/spark_training.py) with ``spark-submit --master spark://127.0.0.1:7077 --py-files waveforms.zip`` as on
EMR, stop the cluster (also on a failure or Ctrl-C), then run stage 4 (run_model_predictions.py) on the run
directory. Stage 1's demo corpus is made first when ``raw_dir`` has none.
A run after a ``kill -9`` of an earlier one on the same ``out_dir`` first stops the JVMs that one left
(their pids are in ``out_dir/work/cluster-processes.json``; aws/local_cluster.py).

Run:
  python aws/cluster_demo.py
  python aws/cluster_demo.py --raw_dir=data/raw --out_dir=data/cluster --epochs=4 --workers=4
  python aws/cluster_demo.py --help
"""
import os
import shutil
import signal
import subprocess
import sys
import time

from local.core.config import configure, fail

# --- I/O ---
raw_dir = "data/demo/raw"  # stage 1's output; the demo corpus is made there when it has no manifest.csv
out_dir = "data/demo/cluster"  # processed/, run/, generated/ and the cluster's work/ (logs, executors) go here
# --- cluster ---
workers = 2  # worker JVMs
worker_cores = 1  # cores each worker offers
worker_memory = "1g"  # memory each worker offers its executors
executor_memory = "768m"  # each executor's JVM heap (its Python workers come on top)
port = 7077  # the master's port on 127.0.0.1
# --- jobs ---
epochs = 2  # Elephas epochs of stage 3
training_args = ["--layers_per_stack=10", "--stacks=1", "--skip_channels=64", "--batch_size=4", "--window=2000",
                 "--valid_windows=32", "--genre_conditioning=true"]  # extra --key=value for stage 3
generate_seconds = 3.0  # seconds of audio stage 4 generates

# -----------------------------------------------------------------------------


def run_stage(title, command):
    from aws.local_cluster import ROOT, ClusterError
    print(f"== {title}", flush=True)
    if subprocess.run(command, cwd=ROOT, stdin=subprocess.DEVNULL).returncode != 0:
        raise ClusterError(f"{title} failed; its output is above")


def terminate(signum, frame):  # `kill` or a closed terminal stops the cluster as Ctrl-C does
    raise KeyboardInterrupt


def check_config(config):
    """One line naming what cannot work, before a JVM starts."""
    if config["workers"] < 1 or config["worker_cores"] < 1 or config["epochs"] < 1 or not config["generate_seconds"] > 0:
        fail(f"workers={config['workers']}, worker_cores={config['worker_cores']} and epochs={config['epochs']} must "
             f"be at least 1, generate_seconds={config['generate_seconds']} positive")
    if shutil.which("java") is None:
        fail("java is not installed: Spark needs it (apt-get install openjdk-17-jre-headless, or make setup)")


def run_demo(config, cluster):
    """Stage 1 if needed, then stages 2 and 3 on ``cluster`` (started here), then stage 4 once it is stopped."""
    from aws.local_cluster import ClusterError, submit, write_code_zip
    raw_dir, out_dir = os.path.abspath(config["raw_dir"]), os.path.abspath(config["out_dir"])  # jobs run elsewhere
    processed, run_dir, generated = (os.path.join(out_dir, n) for n in ("processed", "run", "generated"))
    if not os.path.isfile(os.path.join(raw_dir, "manifest.csv")):
        run_stage("stage 1: the demo corpus", [sys.executable, "run_webscraper.py", f"--out_dir={raw_dir}"])
    print(f"== a Spark standalone master and {config['workers']} workers on 127.0.0.1 "
          f"(logs: {cluster.work_dir}/logs)", flush=True)
    cluster.start()
    code_zip = write_code_zip(os.path.join(cluster.work_dir, "waveforms.zip"))
    for title, script, args in (
            ("stage 2 on the cluster", "aws/spark_preprocessing.py", [f"--raw_dir={raw_dir}", f"--out_dir={processed}"]),
            ("stage 3 (Elephas) on the cluster", "aws/spark_training.py",
             [f"--data_dir={processed}", f"--run_dir={run_dir}", f"--epochs={config['epochs']}",
              *config["training_args"]])):
        print(f"== {title}: spark-submit --master {cluster.master_url} --py-files {code_zip} {script}", flush=True)
        if submit(cluster, script, args, code_zip, config["executor_memory"]).returncode != 0:
            raise ClusterError(f"{title} failed: its output is above; executor logs in {cluster.work_dir}/worker-*/")
    cluster.stop()
    print("== cluster stopped", flush=True)
    run_stage("stage 4 on the run directory", [sys.executable, "run_model_predictions.py", f"--run_dir={run_dir}",
                                               f"--out_dir={generated}", f"--seconds={config['generate_seconds']}"])
    return processed, run_dir, generated


def main(argv=None):
    config = configure(dict(globals()), argv)  # a copy: the block above keeps its defaults for the next call
    check_config(config)
    from aws.local_cluster import ClusterError, StandaloneCluster
    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    cluster = StandaloneCluster(os.path.join(os.path.abspath(config["out_dir"]), "work"), config["workers"],
                                config["worker_cores"], config["worker_memory"], config["port"])
    try:
        processed, run_dir, generated = run_demo(config, cluster)
    except ClusterError as e:
        cluster.stop()
        fail(str(e), status=1)
    except KeyboardInterrupt:
        cluster.stop()
        fail("interrupted; the cluster is stopped", status=130)
    finally:
        cluster.stop()
    print(f"done in {time.monotonic() - started:.0f} s: dataset {processed}, run {run_dir}, audio {generated}")


if __name__ == "__main__":
    main()
