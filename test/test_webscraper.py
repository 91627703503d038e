"""run_webscraper.py end to end: the demo and folder sources, and the config rules every script shares.

(The fma and fma-archive sources run through the script in test_scraping.py and test_fma_archive.py.)
"""
import ast
import csv
import json
import os
import subprocess
import sys
import time

import pytest
from helpers import PYTHON, ROOT, make_audio, refusal, run_script

from local.core import config as config_module
from local.store import manifest

SCRIPT = os.path.join(ROOT, "run_webscraper.py")
FAST_DEMO = ["--demo_tracks_per_genre=2", "--demo_seconds=0.5"]


def script_defaults():
    """The config block of run_webscraper.py read from its source: {key: default}, in order."""
    with open(SCRIPT, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    defaults = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name == "config":
                break
            defaults[name] = ast.literal_eval(node.value)
    return defaults


def manifest_rows(out_dir):
    with open(os.path.join(out_dir, "manifest.csv"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_config_json(out_dir):
    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------- demo

def test_demo_is_deterministic_for_a_seed_with_three_genres(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out_dir = str(tmp_path / name)
        result = run_script("run_webscraper.py", f"--out_dir={out_dir}", f"--seed={seed}", *FAST_DEMO, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "demo: 6 new, 0 already had, 0 failed" in result.stdout
        runs[name] = {r["track_id"]: r for r in manifest_rows(out_dir)}
    rows = runs["a"]
    assert len({r["genre"] for r in rows.values()}) >= 3
    assert set(next(iter(rows.values()))) >= set(manifest.MANIFEST_COLUMNS)
    for track_id, row in rows.items():
        full = os.path.join(tmp_path, "a", *row["path"].split("/"))
        assert row["path"] == f"{row['genre']}/{track_id}.mp3"
        assert int(row["bytes"]) == os.path.getsize(full) and row["sha256"] == manifest.sha256_file(full)
        assert row["split"] == "" and row["source"] == "demo:seed=0"
    assert {k: r["sha256"] for k, r in runs["a"].items()} == {k: r["sha256"] for k, r in runs["b"].items()}
    assert not set(r["sha256"] for r in runs["a"].values()) & set(r["sha256"] for r in runs["c"].values())


def test_demo_rerun_skips_and_unknown_genre_is_one_line(tmp_path):
    out_dir = str(tmp_path / "raw")
    args = [f"--out_dir={out_dir}", "--genres=Folk", *FAST_DEMO]
    assert run_script("run_webscraper.py", *args).returncode == 0
    again = run_script("run_webscraper.py", *args)
    assert again.returncode == 0 and "demo: 0 new, 2 already had" in again.stdout
    bad = run_script("run_webscraper.py", f"--out_dir={out_dir}", "--genres=Polka", *FAST_DEMO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Polka" in bad.stderr


# --------------------------------------------------------------------------- folder

@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """A music folder: tags that disagree with folders, untagged files, a loose file, an empty one, a text file."""
    root = tmp_path_factory.mktemp("music")
    make_audio(str(root / "Rock" / "a.mp3"), seconds=0.3, metadata={"genre": "Jazz", "title": "Tagged", "artist": "X"})
    make_audio(str(root / "Rock" / "b.flac"), seconds=0.3, freq_hz=330)
    make_audio(str(root / "Blues" / "c.ogg"), seconds=0.3, freq_hz=550, metadata={"genre": "Soul"})
    make_audio(str(root / "loose.wav"), seconds=0.3, freq_hz=660)
    (root / "Rock" / "empty.mp3").write_bytes(b"")
    (root / "Rock" / "notes.txt").write_text("not audio")
    return root


@pytest.mark.parametrize("genre_from,expected", [
    ("tags", {"a.mp3": "Jazz", "b.flac": "Rock", "c.ogg": "Soul", "loose.wav": "Unknown"}),
    ("folder", {"a.mp3": "Rock", "b.flac": "Rock", "c.ogg": "Blues", "loose.wav": "Unknown"}),
])
def test_folder_genres_from_tags_or_folder_names(music, tmp_path, genre_from, expected):
    out_dir = str(tmp_path / "raw")
    result = run_script("run_webscraper.py", "--source=folder", f"--folder={music}", f"--out_dir={out_dir}",
                        f"--genre_from={genre_from}", "--link=false")
    assert result.returncode == 0, result.stderr
    assert "folder: 4 new, 0 already had, 1 failed" in result.stdout and "empty" in result.stdout
    rows = manifest_rows(out_dir)
    got = {os.path.basename(r["source"]): r["genre"] for r in rows}
    assert got == expected
    for row in rows:
        with open(row["source"], "rb") as a, open(os.path.join(out_dir, *row["path"].split("/")), "rb") as b:
            assert a.read() == b.read()
    assert next(r for r in rows if r["source"].endswith("a.mp3"))["title"] == "Tagged"


@pytest.mark.parametrize("link", ["true", "0"])
def test_folder_hard_links_or_copies_and_reruns_skip(music, tmp_path, link):
    out_dir = str(tmp_path / "raw")
    args = ["--source=folder", f"--folder={music}", f"--out_dir={out_dir}", f"--link={link}"]
    assert run_script("run_webscraper.py", *args).returncode == 0
    for row in manifest_rows(out_dir):
        linked = os.stat(row["source"]).st_ino == os.stat(os.path.join(out_dir, *row["path"].split("/"))).st_ino
        assert linked == (link == "true")
    again = run_script("run_webscraper.py", *args)
    assert "folder: 0 new, 4 already had" in again.stdout
    assert len(manifest_rows(out_dir)) == 4


def test_folder_genre_filter_is_case_insensitive(music, tmp_path):
    out_dir = str(tmp_path / "raw")
    result = run_script("run_webscraper.py", "--source=folder", f"--folder={music}", f"--out_dir={out_dir}",
                        "--genres", "jazz,SOUL")
    assert result.returncode == 0, result.stderr
    assert sorted(r["genre"] for r in manifest_rows(out_dir)) == ["Jazz", "Soul"]


def test_a_missing_folder_is_one_line(tmp_path):
    result = run_script("run_webscraper.py", "--source=folder", f"--folder={tmp_path}/none", f"--out_dir={tmp_path}/o")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--folder=" in result.stderr
    assert not os.path.exists(tmp_path / "o")


# --------------------------------------------------------------------------- config rules

@pytest.mark.parametrize("args,key", [
    (["--colour=red"], "colour"),
    (["--max_tracks_per_genre=many"], "max_tracks_per_genre"),
    (["--link=maybe"], "link"),
    (["--request_delay_s=soon"], "request_delay_s"),
    (["--concurrency", "2.5"], "concurrency"),
    (["stray"], "stray"),
    (["--config", "/nonexistent/x.toml"], "x.toml"),
])
def test_a_bad_key_or_value_stops_before_any_work_in_one_line(tmp_path, args, key):
    out_dir = tmp_path / "raw"
    result = run_script("run_webscraper.py", f"--out_dir={out_dir}", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr
    if key != "x.toml" and key != "stray":
        assert "valid keys" in lines[0] and "out_dir" in lines[0] and "max_file_mb" in lines[0]
    assert not out_dir.exists()


@pytest.mark.parametrize("key,value", [("source", "radio"), ("genre_from", "mood"), ("page_size", 0),
                                       ("timeout_s", 0.0), ("max_retries", -1), ("request_delay_s", -1.0)])
def test_each_bad_value_is_refused_in_one_line_naming_only_its_key(key, value):
    from local.collect import sources
    refusal(sources.check_config, script_defaults(), key, value)


def test_the_stage_runs_in_process(tmp_path, capsys):
    import run_webscraper
    out_dir = str(tmp_path / "raw")
    run_webscraper.main([f"--out_dir={out_dir}", "--genres=Folk", "--demo_tracks_per_genre=1", "--demo_seconds=0.5"])
    assert "demo: 1 new, 0 already had, 0 failed" in capsys.readouterr().out
    assert [r["genre"] for r in manifest_rows(out_dir)] == ["Folk"]
    with pytest.raises(SystemExit) as stop:
        run_webscraper.main([f"--out_dir={out_dir}", "--source=folder", f"--folder={tmp_path}/none"])
    assert stop.value.code == 2 and "--folder=" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["toml", "json"])
def test_config_file_then_command_line_and_config_json(tmp_path, kind):
    out_dir = str(tmp_path / "raw")
    values = {"out_dir": out_dir, "genres": ["Folk"], "demo_tracks_per_genre": 3, "demo_seconds": 0.5,
              "request_delay_s": 0, "link": False, "max_tracks_per_genre": 1}
    path = tmp_path / f"my.{kind}"
    if kind == "json":
        path.write_text(json.dumps(values))
    else:
        path.write_text(f'out_dir = "{out_dir}"\ngenres = ["Folk"]\ndemo_tracks_per_genre = 3\n'
                        'demo_seconds = 0.5\nrequest_delay_s = 0\nlink = false\nmax_tracks_per_genre = 1\n')
    result = run_script("run_webscraper.py", "--config", str(path), "--max_tracks_per_genre", "2",
                        "--allowed_hosts=a.example, b.example")
    assert result.returncode == 0, result.stderr
    resolved = read_config_json(out_dir)
    assert set(resolved) == set(script_defaults())
    assert resolved["genres"] == ["Folk"] and resolved["link"] is False
    assert resolved["max_tracks_per_genre"] == 2  # the command line wins over the file
    assert resolved["request_delay_s"] == 0.0 and isinstance(resolved["request_delay_s"], float)
    assert resolved["allowed_hosts"] == ["a.example", "b.example"]
    assert resolved["user_agent"] == script_defaults()["user_agent"]
    assert [r["genre"] for r in manifest_rows(out_dir)] == ["Folk", "Folk"]


def test_a_config_file_with_an_unknown_key_or_wrong_type_is_refused(tmp_path):
    for i, content in enumerate(['{"colour": "red"}', '{"concurrency": "lots"}', '{"link": 3}', "[1, 2]",
                                 "not json"]):
        path = tmp_path / f"c{i}.json"
        path.write_text(content)
        result = run_script("run_webscraper.py", "--config", str(path), f"--out_dir={tmp_path}/o")
        assert result.returncode == 2, content
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("1", True), ("yes", True), ("False", False), ("0", False), ("off", False),
])
def test_bool_parsing(text, expected):
    assert config_module.resolve_config({"link": True}, [f"--link={text}"])["link"] is expected


def test_list_int_float_parsing_and_the_bare_flag():
    defaults = {"genres": [], "sizes": [1], "rate": 1.5, "n": 2, "on": False, "name": "x"}
    got = config_module.resolve_config(defaults, ["--genres", "Rock, Hip-Hop,,Jazz", "--sizes=3,4", "--rate=2",
                                                  "--n", "7", "--on", "--name=a=b"])
    assert got == {"genres": ["Rock", "Hip-Hop", "Jazz"], "sizes": [3, 4], "rate": 2.0, "n": 7, "on": True,
                   "name": "a=b"}
    assert config_module.resolve_config(defaults, ["--genres="])["genres"] == []
    with pytest.raises(config_module.ConfigError):
        config_module.resolve_config(defaults, ["--sizes=3,x"])


def test_help_lists_every_key_with_default_and_comment_without_heavy_imports():
    defaults = script_defaults()
    comments = config_module.key_comments(SCRIPT)
    probe = ("import runpy, sys\nsys.argv = ['run_webscraper.py', '--help']\n"
             f"try:\n    runpy.run_path({SCRIPT!r}, run_name='__main__')\nexcept SystemExit as e:\n"
             "    code = e.code\n"
             "heavy = [m for m in ('numpy', 'requests', 'bs4', 'tqdm', 'pyarrow', 'librosa', 'tensorflow') "
             "if m in sys.modules]\nprint('EXIT', code, 'HEAVY', heavy)\n")
    started = time.monotonic()
    result = subprocess.run([PYTHON, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("EXIT 0 HEAVY []")
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  --")}
    assert set(lines) == {f"--{k}" for k in defaults}
    for key, default in defaults.items():
        shown = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        assert f"= {shown}" in lines[f"--{key}"], key
        assert comments[key] and comments[key] in lines[f"--{key}"], key
    assert "source=fma" in result.stdout or "fma-archive" in result.stdout  # the docstring comes first
    assert elapsed < 10, f"--help took {elapsed:.1f} s"


# --------------------------------------------------------------------------- hostile folders and ranges

@pytest.mark.parametrize("link", ["true", "false"])
def test_a_folder_source_takes_only_regular_files_inside_it(tmp_path, link):
    music = tmp_path / "music"
    make_audio(str(music / "Rock" / "good.mp3"), seconds=0.3)
    outside = tmp_path / "secret.mp3"
    outside.write_bytes(b"ID3 top secret, not music")
    os.symlink(outside, music / "Rock" / "shadow.mp3")          # like song.mp3 -> /etc/shadow
    os.symlink("/etc/passwd", music / "Rock" / "passwd.mp3")
    os.symlink("/dev/zero", music / "Rock" / "zero.mp3")
    os.symlink(str(music / "nowhere.mp3"), music / "Rock" / "dangling.mp3")
    os.mkfifo(music / "Rock" / "pipe.mp3")
    os.symlink(music / "Rock" / "good.mp3", music / "Rock" / "alias.mp3")  # inside the folder: fine
    out_dir = str(tmp_path / "raw")
    result = run_script("run_webscraper.py", "--source=folder", f"--folder={music}", f"--out_dir={out_dir}",
                        f"--link={link}", "--genre_from=folder", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "folder: 2 new, 0 already had, 5 failed" in result.stdout
    for name, why in (("shadow", "outside the folder"), ("passwd", "outside the folder"),
                      ("zero", "outside the folder"), ("dangling", "dangling symlink"), ("pipe", "regular file")):
        assert f"{name}.mp3: " in result.stdout and why in result.stdout.split(f"{name}.mp3: ")[1].splitlines()[0]
    with open(os.path.join(out_dir, "failures.csv"), encoding="utf-8") as f:
        assert sum(1 for _ in f) == 1 + 5
    good = (music / "Rock" / "good.mp3").read_bytes()
    placed = [os.path.join(d, n) for d, _, names in os.walk(out_dir) for n in names if n.endswith(".mp3")]
    assert len(placed) == 2
    for path in placed:
        with open(path, "rb") as f:
            assert f.read() == good


@pytest.mark.parametrize("arg,key", [("--demo_seconds=0", "demo_seconds"), ("--demo_seconds=-3", "demo_seconds"),
                                     ("--demo_seconds=1e9", "demo_seconds"), ("--demo_seconds=nan", "demo_seconds"),
                                     ("--demo_tracks_per_genre=-1", "demo_tracks_per_genre"),
                                     ("--file_timeout_s=-1", "file_timeout_s")])
def test_demo_settings_out_of_range_are_one_line(tmp_path, arg, key):
    out_dir = tmp_path / "raw"
    result = run_script("run_webscraper.py", f"--out_dir={out_dir}", arg)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].count("=") >= 1 and key in lines[0]
    assert not out_dir.exists()
