"""The run directory's lock is taken and released by one ``with`` block, on every path out of it."""
import os

import pytest

from local.core import locks
from local.core.config import StageError
from local.store import rundir
from local.train import runner

MODEL_JSON = {"kind": "wavenet", "model": {"dilations": [1]}, "genres": ["A", "B"], "sample_rate": 1000,
              "quantization_channels": 256, "data_dir": "data"}


def lock_is_free(run_dir):
    try:
        locks.acquire_lock(run_dir, "a probe").release()
        return True
    except locks.LockHeld:
        return False


def test_the_lock_is_held_inside_and_released_after_an_error(tmp_path):
    run_dir = str(tmp_path / "run")
    with pytest.raises(RuntimeError):
        with rundir.locked(run_dir, MODEL_JSON):
            assert not lock_is_free(run_dir)
            with pytest.raises(StageError, match="training"):  # a second trainer is refused meanwhile
                with rundir.locked(run_dir, MODEL_JSON):
                    pass
            raise RuntimeError("resume failed")
    assert lock_is_free(run_dir)


def test_train_one_releases_the_run_dir_when_the_task_or_resume_fails(tmp_path):
    run_dir = str(tmp_path / "run")
    seen = []

    def setup(config, data):
        return runner.RunSetup(MODEL_JSON, None, ["A", "B"], 1000, data, [], [], steps=1)

    def failing_task(setup, config, run_dir):
        seen.append(lock_is_free(run_dir))
        raise StageError("no checkpoint can be loaded")

    kind = runner.ModelKind("wavenet", check_config=None, setup=setup, task=failing_task, describe=lambda *a: "")
    data = runner.DatasetView("data", {}, [])
    with pytest.raises(StageError):
        runner.train_one(kind, {"run_dir": run_dir, "data_dir": "data"}, dataset=data)
    assert seen == [False]  # held while the task was made
    assert lock_is_free(run_dir)
    assert os.path.isdir(run_dir)


def test_a_run_dir_holding_another_kind_is_refused_and_left_unlocked(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(os.path.join(run_dir, "checkpoints", "step-00000001"))
    for name in rundir.CHECKPOINT_FILES:
        open(os.path.join(run_dir, "checkpoints", "step-00000001", name), "w").close()
    rundir.write_model_json(run_dir, {**MODEL_JSON, "kind": "tagger"})
    with pytest.raises(StageError, match="holds a tagger run"):
        with rundir.locked(run_dir, MODEL_JSON):
            pass
    assert lock_is_free(run_dir)
