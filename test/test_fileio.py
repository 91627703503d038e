"""local/core/fileio.py: the one way to write a file atomically."""
import os

import pytest

from local.core import fileio


def test_atomic_write_renames_only_complete_files(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    with fileio.atomic_write(path) as f:
        f.write("hello")
        assert not path.exists()
        assert os.path.basename(f.name).startswith(f".tmp-{os.getpid()}-")
    assert path.read_text() == "hello"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.json"
    fileio.write_json_atomic(path, {"x": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_write(path) as f:
            f.write("{broken")
            raise RuntimeError("killed")
    assert path.read_text().strip().startswith("{") and '"x": 1' in path.read_text()
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_dir_replaces_a_directory_whole(tmp_path):
    path = tmp_path / "ckpt"
    for content in ("one", "two"):
        with fileio.atomic_dir(path) as tmp:
            with open(os.path.join(tmp, "w.bin"), "w") as f:
                f.write(content)
    assert (path / "w.bin").read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_stale_temps_of_dead_processes_are_swept_live_ones_kept(tmp_path):
    dead = tmp_path / ".tmp-999999999-model.keras"   # no such pid
    live = tmp_path / f".tmp-{os.getppid()}-metrics.csv"
    (tmp_path / ".tmp-999999998-step-1").mkdir()
    for p in (dead, live):
        p.write_text("x")
    removed = fileio.remove_stale_temps(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == [".tmp-999999998-step-1", ".tmp-999999999-model.keras"]
    assert live.exists() and not dead.exists()
