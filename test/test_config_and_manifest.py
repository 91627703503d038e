"""local/core/config.py rules that the script tests do not reach, and the manifest's kill safety."""
import os

import pytest

from local.core import config
from local.store import manifest

DEFAULTS = {"out_dir": "data/raw", "genres": [], "steps": 10, "rate": 0.5, "trim": True, "dilations": [1, 2]}


def test_a_bare_flag_switches_a_bool_on_and_is_an_error_for_any_other_key():
    assert config.resolve_config(DEFAULTS, ["--trim=false", "--trim"])["trim"] is True
    for key in ("out_dir", "genres", "steps"):
        with pytest.raises(config.ConfigError, match=f"--{key} needs a value"):
            config.resolve_config(DEFAULTS, [f"--{key}"])
    with pytest.raises(config.ConfigError, match="--config needs a file"):
        config.resolve_config(DEFAULTS, ["--config"])


def test_values_are_typed_by_the_default():
    resolved = config.resolve_config(DEFAULTS, ["--steps", "7", "--rate=2", "--genres=Rock, Jazz",
                                                "--dilations=1,2,4,8", "--out-dir=x"])
    assert resolved == {"out_dir": "x", "genres": ["Rock", "Jazz"], "steps": 7, "rate": 2.0, "trim": True,
                        "dilations": [1, 2, 4, 8]}
    for bad in (["--steps=1.5"], ["--rate=fast"], ["--trim=maybe"], ["--dilations=1,x"], ["positional"]):
        with pytest.raises(config.ConfigError) as error:
            config.resolve_config(DEFAULTS, bad)
        assert "\n" not in str(error.value)


def test_a_torn_manifest_row_is_ignored_and_the_next_row_starts_on_its_own_line(tmp_path):
    out = str(tmp_path)
    audio_file = tmp_path / "Rock" / "a.mp3"
    audio_file.parent.mkdir()
    audio_file.write_bytes(b"ID3" + b"\0" * 100)
    manifest.record_track(out, "a", "Rock", str(audio_file), "Rock/a.mp3")
    with open(os.path.join(out, manifest.MANIFEST_NAME), "a", encoding="utf-8") as f:
        f.write("b,Rock,title,art")  # killed mid-row
    assert set(manifest.read_manifest(out)) == {"a"}
    manifest.record_track(out, "c", "Jazz", str(audio_file), "Rock/a.mp3")
    rows = manifest.read_manifest(out)
    assert set(rows) == {"a", "c"} and rows["c"]["genre"] == "Jazz"
    assert manifest.have_track(out, rows, "c")


def test_safe_component_never_escapes_the_folder(tmp_path):
    for hostile in ("../../x", "/etc/passwd", "..", ".", "", "a/b\\c", "\0", "..\\..\\y"):
        name = manifest.safe_component(hostile)
        assert name and "/" not in name and "\\" not in name and name not in (".", "..")
        full, relative = manifest.track_path(str(tmp_path), hostile, hostile, ".mp3")
        assert os.path.realpath(full).startswith(os.path.realpath(str(tmp_path)) + os.sep)
