"""The Spark jobs on a real standalone cluster (a master and two workers in their own JVMs, code shipped with
spark-submit --py-files as on EMR, executors in the workers' folders), the path `make cluster-demo` runs:
stage 2 equals the local stage, stage 3 (Elephas) writes a run directory stage 4 generates from."""
import csv
import glob
import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest
from helpers import PYTHON, ROOT, make_audio, make_broken_files, run_script

from local.dataset import build
from local.store import dataset_files

STAGE2 = dict(sample_rate=16000, quantization_channels=256, trim_silence=True, silence_threshold=60.0,
              min_seconds=0.5, valid_fraction=0.3, test_fraction=0.1, split_seed=0)
TINY_MODEL = ["--layers_per_stack=3", "--stacks=1", "--residual_channels=8", "--dilation_channels=8",
              "--skip_channels=16", "--genre_channels=4", "--window=256", "--batch_size=4", "--valid_windows=4"]


def demo_corpus_with_broken_files(raw, scratch):
    """run_webscraper.py's demo source (3 genres x 3 tracks of 2 s) plus broken files listed in its manifest."""
    made = run_script("run_webscraper.py", f"--out_dir={raw}", "--demo_tracks_per_genre=3", "--demo_seconds=2",
                      timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    names = make_broken_files(os.path.join(raw, "Broken"), scratch)
    with open(os.path.join(raw, "manifest.csv"), "a", newline="") as f:
        for name in names:
            csv.writer(f).writerow([os.path.splitext(name)[0], "Broken", "", "", "test", f"Broken/{name}", "", "", ""])
    return names


def table(out_dir):
    return {r["track_id"]: r for r in pq.read_table(os.path.join(out_dir, "tracks")).to_pylist()}


def failures(out_dir):
    with open(os.path.join(out_dir, "failures.csv"), newline="") as f:
        return sorted((r["path"], r["reason"]) for r in csv.DictReader(f))


def test_stages_2_3_and_4_on_a_standalone_cluster(standalone_cluster, tmp_path):
    from aws.local_cluster import submit
    raw, processed, run_dir = str(tmp_path / "raw"), str(tmp_path / "processed"), str(tmp_path / "run")
    broken = demo_corpus_with_broken_files(raw, str(tmp_path))
    stage2 = [f"--{k}={v}" for k, v in STAGE2.items()]

    job = submit(standalone_cluster, "aws/spark_preprocessing.py", [f"--raw_dir={raw}", f"--out_dir={processed}",
                                                                     *stage2], capture=True, timeout_s=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    local_out = str(tmp_path / "local")
    build.preprocess(raw, local_out, workers=1, progress=False, **STAGE2)
    got, expected = table(processed), table(local_out)
    assert len(got) == 9 and sorted(got) == sorted(expected)
    for track_id, row in expected.items():
        assert got[track_id]["codes"] == row["codes"], track_id
        assert {k: got[track_id][k] for k in ("genre_id", "split", "n_samples", "source_sha256")} == \
               {k: row[k] for k in ("genre_id", "split", "n_samples", "source_sha256")}
    assert failures(processed) == failures(local_out)
    assert sorted(os.path.basename(p) for p, _ in failures(processed)) == sorted(broken)
    assert dataset_files.read_dataset_json(processed) == dataset_files.read_dataset_json(local_out)
    assert "Broken" not in dataset_files.read_dataset_json(processed)["genres"]
    # the executors ran in the workers' folders and got the code as the zip, not from this checkout
    assert glob.glob(os.path.join(standalone_cluster.work_dir, "worker-*", "app-*", "*", "waveforms.zip"))

    job = submit(standalone_cluster, "aws/spark_training.py", [f"--data_dir={processed}", f"--run_dir={run_dir}",
                                                               "--epochs=1", "--genre_conditioning=true", *TINY_MODEL],
                 capture=True, timeout_s=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "epoch 1/1" in job.stdout and os.path.isfile(os.path.join(run_dir, "model.keras"))

    generated = run_script("run_model_predictions.py", f"--run_dir={run_dir}", f"--out_dir={tmp_path / 'gen'}",
                           "--seconds=0.2", "--streams=1", timeout=300)
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert [n for n in os.listdir(tmp_path / "gen") if n.endswith(".wav")]


def jvms_below(folder):
    """Process ids whose command line or working directory lies in ``folder`` (the cluster's JVMs)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if "java" in cmdline and (str(folder) in cmdline or cwd.startswith(str(folder))):
            found.append(int(pid))
    return found


def interrupt_demo(raw, out):
    """Start aws/cluster_demo.py, Ctrl-C it once stage 2 is submitted; (exit status, stderr), after checking
    that its master and workers were running and are all gone within 30 s of its end."""
    # Started from a terminal, the demo gets Ctrl-C's default action. A test run started in the background by a
    # non-interactive shell (`pytest ... &`, `make test &`, many CI scripts) has SIGINT ignored, and an ignored
    # signal stays ignored across exec: the demo then never saw the Ctrl-C, finished stage 2 and failed in stage 3
    # on its one track (exit 1). A handled signal goes back to its default at exec, so handle it while it starts.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        demo = subprocess.Popen([PYTHON, os.path.join(ROOT, "aws", "cluster_demo.py"), f"--raw_dir={raw}",
                                 f"--out_dir={out}", "--port=0"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        for line in demo.stdout:  # the cluster is up once stage 2 is submitted
            if line.startswith("== stage 2"):
                break
        assert jvms_below(out), "the master and workers run"
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    deadline = time.monotonic() + 30
    while jvms_below(out) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not jvms_below(out), f"JVMs left after exit status {demo.returncode}: {stderr[-2000:]}"
    return demo.returncode, stderr


def test_ctrl_c_during_the_demo_stops_the_cluster(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # a manifest (stage 1 is skipped) of one real track, so stage 2 is still working when Ctrl-C comes
    make_audio(str(raw / "Tone" / "t1.mp3"), seconds=20.0)
    (raw / "manifest.csv").write_text("track_id,genre,path\nt1,Tone,Tone/t1.mp3\n")
    status, stderr = interrupt_demo(raw, tmp_path / "out")
    assert status == 130 and "interrupted" in stderr and "Traceback" not in stderr, \
        f"exit status {status}, logs in {tmp_path / 'out' / 'work'}: {stderr[-2000:]}"


def test_a_ctrl_c_while_a_child_starts_comes_once_the_child_is_recorded():
    """A Ctrl-C inside Popen (the demo's test sends it just as spark-submit starts) would lose the child."""
    from aws.local_cluster import signals_held
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, however pytest started
    reached = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # Python runs a handler between two bytecodes: this is where it would raise
                reached.append("recorded")
        assert reached == ["recorded"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with signals_held():  # an ignored Ctrl-C stays ignored, for this process and the children it starts
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_jvm_a_kill_left_unlisted_is_stopped_too_and_no_other(tmp_path):
    from aws.local_cluster import stop_leftovers
    started = []
    for name in ("work", "other"):  # a "java" (argv[0]) naming a file in its folder, in its own session
        (tmp_path / name).mkdir()
        (tmp_path / name / "log").write_text("")
        started.append(subprocess.Popen(["bash", "-c", f"exec -a java tail -f {tmp_path / name / 'log'}"],
                                        start_new_session=True))
    # and spark-submit's launcher script before it execs its JVM, naming the work folder
    launcher = tmp_path / "bin" / "spark-submit"
    launcher.parent.mkdir()
    launcher.write_text("#!/bin/bash\ntail -f \"$2\"\n")  # stays bash, as spark-class does before its exec
    launcher.chmod(0o755)
    started.insert(1, subprocess.Popen(["bash", str(launcher), "--py-files", str(tmp_path / "work" / "log")],
                                       start_new_session=True))
    try:
        deadline = time.monotonic() + 30
        # until each has exec'd (its cmdline names its log): a process caught mid-exec shows its parent's
        while time.monotonic() < deadline and not all(
                b"/log\0" in open(f"/proc/{p.pid}/cmdline", "rb").read() for p in started):
            time.sleep(0.05)
        time.sleep(0.2)
        stopped = stop_leftovers(str(tmp_path / "work"), grace_s=5)
        assert started[0].wait(timeout=10) is not None and len(stopped) == 2, stopped
        assert started[1].wait(timeout=10) is not None
        assert started[2].poll() is None, "a JVM naming another folder is not ours"
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_the_next_start_stops_exactly_the_processes_a_killed_cluster_left(tmp_path):
    from aws import local_cluster
    from local.core.fileio import write_json_atomic
    work = tmp_path / "work"
    work.mkdir()
    # a leader of a session of its own with a child in its group (as a worker and its executor), a process we did
    # not start whose pid the list names (a pid reused since: another start time), and a process that is gone
    left = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 301; wait"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "302"], start_new_session=True)
    gone = subprocess.Popen(["true"], start_new_session=True)
    gone.wait()
    try:
        time.sleep(0.3)  # sh has started its children
        write_json_atomic(str(work / local_cluster.PROCESSES_NAME), [
            {"name": "worker-0", "pid": left.pid, "start_ticks": local_cluster.start_ticks(left.pid)},
            {"name": "master", "pid": bystander.pid, "start_ticks": local_cluster.start_ticks(bystander.pid) - 1},
            {"name": "worker-1", "pid": gone.pid, "start_ticks": 1}])
        assert local_cluster.stop_leftovers(str(work), grace_s=5) == [f"worker-0 pid {left.pid}"]
        assert left.wait(timeout=5) == -signal.SIGTERM
        assert not local_cluster.group_alive(left.pid), "the leader's child went with it"
        assert bystander.poll() is None, "a process it did not start is left alone"
        assert not (work / local_cluster.PROCESSES_NAME).exists()
    finally:
        for process in (left, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_start_on_a_work_dir_in_use_is_refused_and_stops_nothing(tmp_path):
    from aws import local_cluster
    from local.core.fileio import write_json_atomic
    from local.core.locks import acquire_lock
    work = tmp_path / "work"
    running = subprocess.Popen(["sleep", "300"], start_new_session=True)  # a process of the live cluster
    try:
        with acquire_lock(str(work), "a Spark standalone cluster"):
            write_json_atomic(str(work / local_cluster.PROCESSES_NAME), [
                {"name": "master", "pid": running.pid, "start_ticks": local_cluster.start_ticks(running.pid)}])
            with pytest.raises(local_cluster.ClusterError, match="is in use by process"):
                local_cluster.StandaloneCluster(str(work), workers=1).start()
            assert running.poll() is None and (work / local_cluster.PROCESSES_NAME).exists()
    finally:
        running.kill()
        running.wait()


def test_a_killed_demo_leaves_a_cluster_the_next_start_stops(tmp_path):
    from aws.local_cluster import StandaloneCluster, free_port
    raw, out, port = tmp_path / "raw", tmp_path / "out", free_port()
    make_audio(str(raw / "Tone" / "t1.mp3"), seconds=20.0)
    (raw / "manifest.csv").write_text("track_id,genre,path\nt1,Tone,Tone/t1.mp3\n")
    demo = subprocess.Popen([PYTHON, os.path.join(ROOT, "aws", "cluster_demo.py"), f"--raw_dir={raw}",
                             f"--out_dir={out}", f"--port={port}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        for line in demo.stdout:
            if line.startswith("== stage 2"):
                break
        demo.kill()  # kill -9: no stop() runs, the JVMs (their own sessions) stay
        demo.wait()
        left = jvms_below(out)
        assert len(left) >= 3, "the master and two workers outlive the killed demo"
        cluster = StandaloneCluster(str(out / "work"), workers=1, port=port)
        cluster.start()  # the same port: without the leftovers stopped, "port ... is taken"
        try:
            assert not set(left) & set(jvms_below(out)), "the killed demo's JVMs are gone"
            assert cluster.status()["aliveworkers"] == 1
        finally:
            cluster.stop()
        left_over = jvms_below(out)
        assert not left_over, [(open(f"/proc/{pid}/cmdline", "rb").read()[:400], open(f"/proc/{pid}/stat").read()[:100])
                               for pid in left_over]
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in jvms_below(out):  # only when the test failed: the JVMs it made, found by their folder
            os.kill(pid, signal.SIGKILL)
