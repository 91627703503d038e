"""run_model_training.py --sweep: a 2x2 grid of tiny models, killed in its third run and rerun."""
import csv
import os
import signal
import subprocess
import sys
import time

from helpers import ROOT, run_script
from test_training import TINY_ARGS, write_tone_dataset

SWEEP_FILE = """
steps = 6
eval_every = 3
checkpoint_every = 3
[sweep]
learning_rate = [0.001, 0.003]
residual_channels = [8, 12]
"""


def read_table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_killed_sweep_reruns_only_what_is_unfinished(tmp_path):
    data_dir = write_tone_dataset(tmp_path / "data")
    sweep_file = tmp_path / "grid.toml"
    sweep_file.write_text(SWEEP_FILE)
    sweep_dir = tmp_path / "sweep"
    args = [f"--data_dir={data_dir}", f"--run_dir={sweep_dir}", f"--sweep={sweep_file}", *TINY_ARGS]
    names = ["lr0.001_rc8", "lr0.001_rc12", "lr0.003_rc8", "lr0.003_rc12"]

    # Kill the sweep once its third run has written a checkpoint.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "run_model_training.py"), *args], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    third = sweep_dir / names[2] / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (
            third.is_dir() and any(p.name.startswith("step-") for p in third.iterdir())):
        time.sleep(0.05)
    assert process.poll() is None, f"the sweep ended before its third run was killed:\n{process.stdout.read()}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(read_table(sweep_dir / "sweep.csv")) == 2
    finished = {name: (sweep_dir / name / "metrics.csv").stat().st_mtime_ns for name in names[:2]}

    result = run_script("run_model_training.py", *args)
    assert result.returncode == 0, result.stderr
    assert "2 of 4 runs already finished" in result.stdout
    assert "resuming" in result.stdout  # the third run continues from its checkpoint
    for name, mtime in finished.items():  # the first two are not retrained
        assert (sweep_dir / name / "metrics.csv").stat().st_mtime_ns == mtime
    table = read_table(sweep_dir / "sweep.csv")
    assert [(r["learning_rate"], r["residual_channels"]) for r in table] == \
        [("0.001", "8"), ("0.001", "12"), ("0.003", "8"), ("0.003", "12")]
    for row, name in zip(table, names):
        assert row["path"] == f"{name}/" and row["steps"] == "6"
        assert 0 < float(row["test_bits_per_sample"]) < 8.5
        assert (sweep_dir / name / "model.keras").is_file()
    page = (sweep_dir / "sweep.html").read_text()
    assert all(f"href='{name}/report.html'" in page for name in names)
    assert any(p.name.startswith("events") for p in (sweep_dir / "tensorboard-hparams").iterdir())


def test_a_bad_sweep_file_is_refused_before_any_training(tmp_path):
    sweep_file = tmp_path / "bad.toml"
    sweep_file.write_text("[sweep]\nlearning_rate = []\n")
    result = run_script("run_model_training.py", f"--run_dir={tmp_path / 'sweep'}", f"--sweep={sweep_file}",
                        f"--data_dir={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sweep.learning_rate" in result.stderr
    assert not (tmp_path / "sweep").exists()
