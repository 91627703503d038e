"""One writer per stage-2 out_dir and per training run_dir, with real processes."""
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from helpers import PYTHON, ROOT, make_audio, run_script

from local.core import locks
from local.dataset import build

HOLD = ("import sys, time; sys.path.insert(0, sys.argv[1]); from local.core.locks import acquire_lock; "
        "acquire_lock(sys.argv[2], 'a test holder'); print('held', flush=True); time.sleep(600)")


def hold_lock(directory):
    """A separate process holding ``directory``'s lock; returns it once the lock is held."""
    process = subprocess.Popen([PYTHON, "-c", HOLD, ROOT, str(directory)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def wait_for_lock_holder(directory, pid, timeout_s=120):
    path = os.path.join(directory, locks.LOCK_NAME)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                if json.loads(f.read() or "{}").get("pid") == pid:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError("the first run never took the lock")


def test_a_second_stage2_run_on_one_out_dir_is_refused_and_rows_are_never_doubled(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for i in range(6):
        make_audio(str(raw / "Rock" / f"r{i}.mp3"), seconds=1.5, freq_hz=200 + 40 * i)
    command = [PYTHON, os.path.join(ROOT, "run_transformation_scripts.py"), f"--raw_dir={raw}", f"--out_dir={out}",
               "--workers=2", "--min_seconds=0.5", "--rows_per_part=1"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_lock_holder(str(out), first.pid)
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out_first, err_first = first.communicate(timeout=300)
    assert first.returncode == 0, err_first
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"in use by process {first.pid} (stage 2)" in second.stderr and str(out) in second.stderr
    ids = pq.read_table(str(out / "tracks"), columns=["track_id"]).column("track_id").to_pylist()
    assert sorted(ids) == [f"r{i}" for i in range(6)]
    # the lock went with the process: a rerun works and does nothing twice
    again = run_script("run_transformation_scripts.py", *command[2:])
    assert again.returncode == 0 and "0 tracks processed, 6 already done" in again.stdout


def test_a_refused_stage2_run_writes_nothing_not_even_its_config(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Rock" / "r0.mp3"), seconds=1.0)
    holder = hold_lock(out)
    try:
        refused = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={out}")
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 2 and f"in use by process {holder.pid}" in refused.stderr, refused.stderr
    assert sorted(os.listdir(out)) == [locks.LOCK_NAME]  # the running writer's config.json is its own


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    make_audio(str(raw / "Rock" / "a.mp3"), seconds=1.5)
    holder = hold_lock(out)
    try:
        refused = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={out}",
                             "--min_seconds=0.5")
        assert refused.returncode == 2 and f"process {holder.pid} (a test holder)" in refused.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with open(out / locks.LOCK_NAME) as f:
        assert json.load(f)["pid"] == holder.pid  # the dead holder's lock file is still there
    summary = build.preprocess(str(raw), str(out), workers=1, min_seconds=0.5, progress=False)
    assert summary["processed"] == 1


@pytest.mark.slow
def test_a_second_training_on_one_run_dir_is_refused(tmp_path):
    raw, data, run = tmp_path / "raw", tmp_path / "data", tmp_path / "run"
    for genre, freq in (("A", 300), ("B", 500)):
        for i in range(3):
            make_audio(str(raw / genre / f"{genre}{i}.mp3"), seconds=1.5, freq_hz=freq + 30 * i)
    build.preprocess(str(raw), str(data), workers=1, min_seconds=0.5, valid_fraction=0.3,
                             test_fraction=0.0, progress=False)
    holder = hold_lock(run)  # as a training in progress would
    try:
        result = run_script("run_model_training.py", f"--data_dir={data}", f"--run_dir={run}", "--steps=1",
                            "--window=256", "--layers_per_stack=3", "--valid_windows=1")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"in use by process {holder.pid}" in lines[0] and str(run) in lines[0]
        assert sorted(os.listdir(run)) == [locks.LOCK_NAME]  # nothing written by the refused run
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_forked_worker_does_not_keep_the_lock(tmp_path):
    lock = locks.acquire_lock(str(tmp_path), "parent")
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # the child lingers after the parent let go, like an orphaned pool worker
        os.write(ready_write, b"x")  # fork's hooks have run by now
        time.sleep(1.5)
        os._exit(0)
    os.read(ready_read, 1)
    try:
        os.close(lock.fd)  # the parent dies (its fds close; no unlock call); a child's copy would keep the lock
        locks.HELD_FDS.discard(lock.fd)
        lock.fd = None
        locks.acquire_lock(str(tmp_path), "next").release()
    finally:
        os.waitpid(child, 0)
