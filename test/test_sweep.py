"""local/train/sweep.py: sweep files, the run set, names, the results table (the end-to-end sweep is in
test_sweep_training.py)."""
import csv
import json

import pytest

from local.core.config import ConfigError
from local.train import sweep

DEFAULTS = {"data_dir": "data/processed", "run_dir": "data/runs/default", "learning_rate": 1e-3,
            "residual_channels": 32, "dilations": [1, 2, 4], "genre_conditioning": False, "steps": 100,
            "max_minutes": 0.0, "sweep": "", "model": "wavenet", "window": 4000}


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_grid_is_every_combination_in_file_order(tmp_path):
    plan = sweep.read_sweep_file(write(tmp_path, """
steps = 7
[sweep]
learning_rate = [0.001, 0.003]
residual_channels = [16, 32, 64]
"""), DEFAULTS)
    assert plan.base == {"steps": 7}
    assert plan.varied_keys == ["learning_rate", "residual_channels"]
    assert len(plan.points) == 6
    assert plan.points[0] == {"learning_rate": 0.001, "residual_channels": 16}
    assert plan.points[-1] == {"learning_rate": 0.003, "residual_channels": 64}
    assert plan.names[0] == "lr0.001_rc16" and len(set(plan.names)) == 6


def test_random_mode_draws_distinct_points_reproducibly(tmp_path):
    text = """
sweep_mode = "random"
sweep_runs = 3
[sweep]
learning_rate = [0.001, 0.002, 0.003, 0.004]
window = [1000, 2000]
"""
    first = sweep.read_sweep_file(write(tmp_path, text), DEFAULTS)
    again = sweep.read_sweep_file(write(tmp_path, text), DEFAULTS)
    assert len(first.points) == 3 and first.points == again.points
    assert len({json.dumps(p, sort_keys=True) for p in first.points}) == 3
    other = sweep.read_sweep_file(write(tmp_path, text.replace("sweep_runs = 3", "sweep_runs = 3\nsweep_seed = 5")),
                                  DEFAULTS)
    assert all(p in sweep.grid_points(first.axes) for p in other.points)


def test_list_keys_take_lists_of_lists_and_json_works(tmp_path):
    path = write(tmp_path, json.dumps({"sweep": {"dilations": [[1, 2], [1, 2, 4, 8]], "genre_conditioning": [True, False]}}),
                 "s.json")
    plan = sweep.read_sweep_file(path, DEFAULTS)
    assert plan.points[0] == {"dilations": [1, 2], "genre_conditioning": True}
    assert plan.names[0] == "dilations1-2_gcon"


@pytest.mark.parametrize("text, words", [
    ("[sweep]\nlearnin_rate = [0.1]\n", ["unknown key 'sweep.learnin_rate'"]),
    ("stepz = 3\n[sweep]\nlearning_rate = [0.1]\n", ["unknown key 'stepz'"]),
    ("[sweep]\nlearning_rate = []\n", ["sweep.learning_rate", "non-empty list"]),
    ("[sweep]\nlearning_rate = 0.1\n", ["sweep.learning_rate", "non-empty list"]),
    ("[sweep]\nresidual_channels = [16, \"wide\"]\n", ["sweep.residual_channels", "integer"]),
    ("[sweep]\nrun_dir = [\"a\", \"b\"]\n", ["sweep.run_dir", "cannot vary"]),
    ("[sweep]\nquantization_channels = [256, 65536]\n", ["unknown key"]),
    ("[sweep]\ndilations = [1, 2]\n", ["sweep.dilations", "list of lists"]),
    ("sweep_mode = \"random\"\nsweep_runs = 9\n[sweep]\nlearning_rate = [0.1, 0.2]\n", ["sweep_runs = 9", "2 points"]),
    ("sweep_mode = \"best\"\n[sweep]\nlearning_rate = [0.1]\n", ["sweep_mode", "grid"]),
    ("steps = 3\n", ["needs a [sweep] table"]),
    ("[sweep\n", ["cannot parse"]),
])
def test_a_bad_sweep_file_is_one_line_naming_the_file_and_key(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        sweep.read_sweep_file(path, DEFAULTS)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--sweep {path}")
    for word in words:
        assert word in message


def test_run_configs_layer_file_then_command_line_then_point(tmp_path):
    plan = sweep.read_sweep_file(write(tmp_path, "steps = 7\nwindow = 500\n[sweep]\nlearning_rate = [0.1, 0.2]\n"),
                                 DEFAULTS)
    config = {**DEFAULTS, "run_dir": str(tmp_path / "sw"), "window": 900, "sweep": "s.toml"}
    runs = sweep.run_configs(plan, config, ["--sweep=s.toml", "--window=900"])
    assert [name for name, _ in runs] == ["lr0.1", "lr0.2"]
    first = runs[0][1]
    assert first["steps"] == 7 and first["window"] == 900 and first["learning_rate"] == 0.1
    assert first["run_dir"] == str(tmp_path / "sw" / "lr0.1") and first["sweep"] == ""


def test_the_table_holds_finished_runs_only_and_the_page_links_their_reports(tmp_path):
    plan = sweep.read_sweep_file(write(tmp_path, "[sweep]\nlearning_rate = [0.1, 0.2, 0.3]\n"), DEFAULTS)
    for name, point, bits in zip(plan.names[:2], plan.points, (3.5, 3.1)):
        row = sweep.result_row(name, point, [{"step": 10, "elapsed_seconds": 90.0, "train_bits_per_sample": bits,
                                              "valid_bits_per_sample": bits + 0.1}],
                               {"test_bits_per_sample": bits + 0.2}, {"genre_accuracy": 1.0, "flatness_ratio": 1.5})
        (tmp_path / "sw" / name).mkdir(parents=True)
        (tmp_path / "sw" / name / sweep.RESULT_FILE).write_text(json.dumps({"row": row}))
    (tmp_path / "sw" / plan.names[2]).mkdir()  # an unfinished run: no result yet
    rows = sweep.write_sweep_table(str(tmp_path / "sw"), plan, "cost")
    assert len(rows) == 2
    with open(tmp_path / "sw" / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["learning_rate"] for r in table] == ["0.1", "0.2"]
    assert table[1]["test_bits_per_sample"] == "3.3" and table[0]["minutes"] == "1.5"
    assert table[0]["path"] == "lr0.1/"
    page = (tmp_path / "sw" / "sweep.html").read_text()
    assert "href='lr0.1/report.html'" in page and "href='lr0.3/report.html'" not in page
    assert "http" not in page  # static: nothing fetched from the network



def test_a_grid_over_context_rate_resolves_to_models_with_and_without_the_context_stack(tmp_path):
    """Issue 18: the context keys are stage-3 keys a sweep can vary; each run's config builds its model."""
    import run_model_training
    from local.core.config import config_keys
    from local.model.wavenet import WaveNetConfig
    from local.train.runner import check_config
    path = tmp_path / "context.toml"
    path.write_text("context_layers = 3\n[sweep]\ncontext_rate = [0, 16, 256]\n")
    defaults = config_keys(vars(run_model_training))
    plan = sweep.read_sweep_file(str(path), defaults)
    runs = sweep.run_configs(plan, {**defaults, "run_dir": str(tmp_path / "s")}, [])
    assert [name for name, _ in runs] == ["cr0", "cr16", "cr256"]
    for (_, run_config), rate in zip(runs, (0, 16, 256)):
        check_config(run_config)
        wavenet = WaveNetConfig.from_config(run_config)
        assert wavenet.context_rate == rate and wavenet.has_context == bool(rate)
        assert wavenet.context_past == 8 * rate and wavenet.context_dilations == (1, 2, 4)
