"""A stage prints none of TensorFlow's C++ start-up lines (absl, XLA, CUDA plugin registration)."""
import subprocess

import pytest
from helpers import PYTHON, ROOT

pytestmark = pytest.mark.slow  # a TensorFlow start-up per test

START_UP_MARKS = ("absl::InitializeLog", "computation_placer", "W0000", "E0000", "cuInit", "cuda_dnn")


def run_python(code, env=None):
    import os
    return subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})


def test_a_stage_that_imports_tensorflow_prints_none_of_its_start_up_lines():
    quiet = run_python("from local.core.config import stage_main\n"
                       "@stage_main\n"
                       "def main(argv=None):\n"
                       "    import keras, tensorflow as tf\n"
                       "    print(float(keras.layers.Dense(1)(tf.ones((1, 2))).shape[1]))\n"
                       "main()")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "1.0"
    assert not [m for m in START_UP_MARKS if m in quiet.stderr], quiet.stderr


def test_without_the_hook_tensorflow_prints_them_so_the_check_can_fail():
    loud = run_python("import tensorflow")
    assert [m for m in START_UP_MARKS if m in loud.stderr], loud.stderr


def test_a_failing_import_still_raises_with_its_lines():
    failing = run_python("import sys\n"
                         "from local.core.quiet import quiet_tensorflow_import\n"
                         "sys.modules['tensorflow.python'] = None  # makes the import fail inside tensorflow\n"
                         "quiet_tensorflow_import()\n"
                         "import tensorflow")
    assert failing.returncode != 0
    assert "Error" in failing.stderr


def test_loading_and_running_a_pretrained_tagger_prints_none_of_them_either():
    quiet = run_python("from local.core.config import stage_main\n"
                       "@stage_main\n"
                       "def main(argv=None):\n"
                       "    import numpy as np\n"
                       "    from local.judge import pretrained\n"
                       "    tagger = pretrained.load('mtt')\n"
                       "    print(tagger.run(np.zeros((2, pretrained.PATCH_FRAMES, pretrained.N_MELS)))[0].shape)\n"
                       "main()")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip().endswith("(2, 50)"), quiet.stdout
    assert not [m for m in START_UP_MARKS + ("mlir", "I0000") if m in quiet.stderr], quiet.stderr
