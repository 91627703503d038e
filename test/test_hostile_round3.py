"""The third round of hostile inputs (issue 29): manifests as people write them, the same audio under two ids,
FMA ids that sanitise to one name, trickled pages, absurd training sizes, unclear stage-4 messages. Each test
fails on the code before the fix (the S3 ones are in test_s3_sync.py)."""
import csv
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import make_audio, run_script
from local.collect import demo_corpus
from local.core.config import StageError
from local.dataset import build, inputs as dataset_inputs
from local.store import manifest


def write_manifest(raw, rows, columns=manifest.MANIFEST_COLUMNS, bom=False):
    """``raw/manifest.csv`` as a person (or Excel's "CSV UTF-8", ``bom``) writes it."""
    with open(os.path.join(raw, "manifest.csv"), "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def rows_of(raw, track_ids_genres):
    """Manifest rows for files already below ``raw``: {track_id: (relative path, genre, split)}."""
    return [{"track_id": t, "path": path, "genre": genre, "split": split,
             "sha256": manifest.sha256_file(os.path.join(raw, *path.split("/")))}
            for t, (path, genre, split) in track_ids_genres.items()]


@pytest.fixture
def raw(tmp_path):
    """A raw folder of three real mp3s in a folder named Rock."""
    folder = tmp_path / "raw"
    for i in range(3):
        make_audio(str(folder / "Rock" / f"f{i}.mp3"), seconds=1.0, freq_hz=300 + 70 * i)
    return str(folder)


# --- item 2 and 3: the manifest's header -----------------------------------------------------------------

def test_a_manifest_with_a_utf8_bom_is_read_with_its_ids_genres_and_splits(raw, tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM: the header became "\\ufefftrack_id", every row was dropped and
    stage 2 scanned the folder instead (ids f0.., genre Rock, no word); a stage-1 rerun appended every row again."""
    write_manifest(raw, rows_of(raw, {"jazz-1": ("Rock/f0.mp3", "Jazz", "valid"),
                                      "jazz-2": ("Rock/f1.mp3", "Jazz", "test"),
                                      "jazz-3": ("Rock/f2.mp3", "Jazz", "training")}), bom=True)
    inputs = dataset_inputs.list_inputs(raw)
    assert sorted((i["track_id"], i["genre"], i["split"]) for i in inputs) == [
        ("jazz-1", "Jazz", "valid"), ("jazz-2", "Jazz", "test"), ("jazz-3", "Jazz", "train")]

    demo = str(tmp_path / "demo")
    demo_corpus.write_demo_corpus(demo, genres=["Folk"], tracks_per_genre=2, seconds=0.5, progress=False)
    rows = list(manifest.read_manifest(demo).values())
    write_manifest(demo, rows, bom=True)
    again = demo_corpus.write_demo_corpus(demo, genres=["Folk"], tracks_per_genre=2, seconds=0.5, progress=False)
    assert again["downloaded"] == 0 and again["skipped"] == 2
    with open(os.path.join(demo, "manifest.csv"), encoding="utf-8-sig") as f:
        assert len(list(csv.DictReader(f))) == 2


@pytest.mark.parametrize("case", ["renamed_id", "no_path", "header_only", "empty"])
def test_a_manifest_that_lists_nothing_usable_is_one_line_not_a_silent_folder_scan(raw, tmp_path, case):
    """A renamed track_id column, a header-only or empty manifest fell back to a folder scan without a word;
    a manifest without a path column was a KeyError traceback. Stage 2 (and stage 1 on such a manifest) now
    stops in one line naming the file."""
    rows = rows_of(raw, {"t0": ("Rock/f0.mp3", "Jazz", "")})
    columns = {"renamed_id": ["id", "genre", "path", "sha256"], "no_path": ["track_id", "genre", "file"],
               "header_only": manifest.MANIFEST_COLUMNS, "empty": None}[case]
    if case == "empty":
        open(os.path.join(raw, "manifest.csv"), "w").close()
    else:
        write_manifest(raw, [dict(r, id=r["track_id"], file=r["path"]) for r in rows] if case != "header_only"
                       else [], columns)
    result = run_script("run_transformation_scripts.py", f"--raw_dir={raw}", f"--out_dir={tmp_path / 'out'}",
                        timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and os.path.join(raw, "manifest.csv") in result.stderr, result.stderr
    expected = {"renamed_id": "no track_id column", "no_path": "no path column", "header_only": "lists no track",
                "empty": "lists no track"}[case]
    assert expected in result.stderr and not os.path.exists(tmp_path / "out" / "dataset.json")
    if case == "renamed_id":  # stage 1 would have fetched everything again and appended duplicate rows
        stage1 = run_script("run_webscraper.py", f"--out_dir={raw}", "--genres=Folk", "--demo_tracks_per_genre=1",
                            "--demo_seconds=0.5", timeout=120)
        assert stage1.returncode == 2 and "no track_id column" in stage1.stderr, stage1.stderr
        assert stage1.stderr.count("\n") == 1 and not os.path.isdir(os.path.join(raw, "Folk"))


# --- item 8: a manifest row whose path is empty or a folder ----------------------------------------------

def test_a_manifest_row_whose_path_is_empty_or_a_folder_is_said_to_be_so(raw):
    rows = rows_of(raw, {"ok": ("Rock/f0.mp3", "Rock", "")}) + [
        {"track_id": "blank", "path": "", "genre": "Rock"}, {"track_id": "dir", "path": "Rock", "genre": "Rock"}]
    write_manifest(raw, rows)
    usable, refused = build.split_refused(raw, dataset_inputs.list_inputs(raw))
    assert [i["track_id"] for i in usable] == ["ok"]
    reasons = dict(refused)
    assert reasons[os.path.join(raw, "Rock")].startswith("a folder, not an audio file"), reasons
    assert reasons["(track 'blank': no path)"].startswith("its manifest.csv row has an empty path"), reasons
    assert not any("FIFO" in r for r in reasons.values())


# --- item 4: the same audio under two ids ----------------------------------------------------------------

def test_the_same_audio_under_two_ids_is_reported_and_kept_in_one_split(raw, tmp_path):
    """Two rows of one path, and a byte-identical copy (same sha256), landed in train and test: a leak no one
    was told of. They now share the first one's split, and stage 2 says so for each."""
    shutil.copyfile(os.path.join(raw, "Rock", "f0.mp3"), os.path.join(raw, "Rock", "copy.mp3"))
    write_manifest(raw, rows_of(raw, {"a": ("Rock/f0.mp3", "Rock", "training"), "b": ("Rock/f0.mp3", "Rock", "test"),
                                      "c": ("Rock/copy.mp3", "Rock", "validation"),
                                      "d": ("Rock/f1.mp3", "Rock", "validation"),
                                      "e": ("Rock/f2.mp3", "Rock", "test")}))
    out = str(tmp_path / "out")
    summary = build.preprocess(raw, out, progress=False, min_seconds=0.2)
    from local.store import dataset_files as dataset_store
    splits = {r["track_id"]: r["split"] for r in dataset_store.read_index(out)}
    assert splits == {"a": "train", "b": "train", "c": "train", "d": "valid", "e": "test"}, splits
    told = {path: text for path, text in summary["warnings"] if "same audio" in text}
    assert set(told) == {os.path.join(raw, "Rock", "f0.mp3"), os.path.join(raw, "Rock", "copy.mp3")}, told
    assert all("track 'a'" in text and "(train, moved)" in text for text in told.values()), told
    assert "same sha256" in told[os.path.join(raw, "Rock", "copy.mp3")]


# --- item 8: stage 4's arguments -------------------------------------------------------------------------

def test_stage4_says_a_device_fifo_or_folder_argument_is_one_before_any_work(tmp_path):
    """--audio=/dev/zero or a FIFO said "no such file or folder" (it exists); --similar_to=<a run dir> embedded
    the whole dataset (47 s) before refusing. Both now stop at once, naming what the path is."""
    from local.judge import commands as judge
    fifo = str(tmp_path / "pipe.mp3")
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        with pytest.raises(StageError, match="is a device, FIFO or socket, not an audio file or a folder"):
            judge.tag_command(str(tmp_path / "no-run"), path, str(tmp_path / "out"))
    with pytest.raises(StageError, match="no such file or folder"):
        judge.tag_command(str(tmp_path / "no-run"), str(tmp_path / "missing"), str(tmp_path / "out"))
    started = time.monotonic()
    with pytest.raises(StageError, match="is a folder, not an audio file or a track_id"):
        judge.similar_command(str(tmp_path / "no-run"), str(tmp_path), 5, str(tmp_path / "out"))
    assert time.monotonic() - started < 1.0


# --- item 5: FMA ids that sanitise to one name -----------------------------------------------------------

def test_two_fma_ids_that_sanitise_to_one_name_are_both_kept(tmp_path):
    """`a/b` and `a_b` both became `Rock/a_b.mp3`: the second download overwrote the first and the manifest
    had two rows of one id. The second now gets its own name, said in one line."""
    from test_scraping import FAULT_SETTINGS, FakeFma, mp3_bytes, serve
    from local.collect import scraping
    site = FakeFma({}, {})
    server, base = serve(site)
    try:
        bodies = {}
        tracks = []
        for n, track_id in enumerate(["a/b", "a_b", "c"]):
            bodies[track_id] = mp3_bytes(str(tmp_path), f"s{n}", freq_hz=300 + 90 * n)
            site.files[f"/files/s{n}.mp3"] = (bodies[track_id], "audio/mpeg", None)
            tracks.append({"id": track_id, "title": f"song {n}", "artistName": "Band", "albumTitle": "LP",
                           "url": f"{base}/music/{n}", "fileUrl": f"{base}/files/s{n}.mp3"})
        site.genres = {"Rock": ("modern", tracks)}
        said = []
        out = str(tmp_path / "out")
        summary = scraping.scrape_fma(out, ["Rock"], 0, base, **dict(FAULT_SETTINGS, log=said.append))
        again = scraping.scrape_fma(out, ["Rock"], 0, base, **FAULT_SETTINGS)
    finally:
        server.shutdown()
    assert summary["downloaded"] == 3 and not summary["failed"], summary
    assert again["downloaded"] == 0 and again["skipped"] == 3, again
    rows = list(csv.DictReader(open(os.path.join(out, "manifest.csv"), encoding="utf-8")))
    assert len(rows) == 3 and len({r["track_id"] for r in rows}) == 3, rows
    by_source = {r["source"].rsplit("/", 1)[1]: r for r in rows}
    for n, track_id in enumerate(["a/b", "a_b", "c"]):
        with open(os.path.join(out, *by_source[f"s{n}.mp3"]["path"].split("/")), "rb") as f:
            assert f.read() == bodies[track_id], track_id
    assert [m for m in said if "both make the file name 'a_b'" in m], said


# --- item 6: pages and robots.txt trickled a byte at a time ----------------------------------------------

class Trickle(BaseHTTPRequestHandler):
    """robots.txt and genre pages sent a byte every 0.2 s (each read well under timeout_s); ``/big/``: a
    complete page larger than the page cap; a file page (``/genre/Rock/``) listing nothing."""
    protocol_version = "HTTP/1.1"
    trickle_robots = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            if self.path == "/robots.txt" and not self.server.trickle_robots:
                return self.answer(b"User-agent: *\nAllow: /\n", "text/plain")
            if self.path.startswith("/genre/Big/"):
                return self.answer(b"<html>" + b"x" * 5000 + b"</html>", "text/html")
            body = b"User-agent: *\n" if self.path == "/robots.txt" else b"<html><body>" + b" " * 500
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass  # the client cut the trickle: the point of the test

    def answer(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def trickle_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    server.trickle_robots = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


SLOW_SITE = dict(page_size=4, user_agent="Mozilla/5.0 WaveformsTest", request_delay_s=0.0, max_retries=1,
                 timeout_s=1.0, concurrency=1, max_file_mb=0.1, backoff_s=0.05, progress=False)


def test_a_trickled_page_or_robots_txt_fails_within_its_timeouts_in_one_line(trickle_server, tmp_path):
    """A listing page (or robots.txt) trickled a byte every 0.2 s kept each read under timeout_s and hung the
    scrape for as long as the server liked; now each try ends timeout_s after the answer began."""
    from local.collect import scraping
    server, base = trickle_server
    for trickled in ("page", "robots.txt"):
        server.trickle_robots = trickled == "robots.txt"
        said = []
        started = time.monotonic()
        summary = scraping.scrape_fma(str(tmp_path / trickled), ["Rock"], 0, base, log=said.append, **SLOW_SITE)
        took = time.monotonic() - started
        # two tries of timeout_s each, a backoff between (robots.txt: its tries, then the page refused at once)
        assert took < 6.0, (trickled, took)
        assert len(summary["failed"]) == 1 and "\n" not in summary["failed"][0][1], summary
        if trickled == "page":
            assert "not complete within timeout_s=1 s" in summary["failed"][0][1], summary
        else:
            assert [m for m in said if "robots.txt could not be read (not complete within timeout_s=1 s" in m], said


def test_the_page_cap_message_names_the_page_cap(trickle_server, tmp_path, monkeypatch):
    """A page over the cap was reported as "larger than the 20.97 MB cap (max_file_mb)": neither its key
    nor its value."""
    from local.collect import http_client, scraping
    _, base = trickle_server
    monkeypatch.setattr(http_client, "MAX_PAGE_BYTES", 1000)
    summary = scraping.scrape_fma(str(tmp_path / "big"), ["Big"], 0, base, log=lambda m: None, **SLOW_SITE)
    (url, reason), = summary["failed"]
    assert "larger than the 0.001 MB cap (a page's cap, MAX_PAGE_BYTES)" in reason and "max_file_mb" not in reason


# --- items 3 and 7: stage 3's absurd settings and a garbled checkpoint -------------------------------------

@pytest.fixture
def tone_data(tmp_path):
    from test_training import write_tone_dataset
    return write_tone_dataset(tmp_path / "data")


def stage3(data_dir, run_dir, *args, tiny=True):
    """Stage 3 on ``data_dir``: the tiny model of test_training (``tiny``), else the script's defaults."""
    from test_training import TINY_ARGS
    return run_script("run_model_training.py", f"--data_dir={data_dir}", f"--run_dir={run_dir}",
                      *(TINY_ARGS if tiny else ()), "--eval_every=2", "--checkpoint_every=2", "--stuck_check_step=0",
                      *args, env={"TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=60)


@pytest.mark.parametrize("arg, key", [("--residual_channels=1000000", "residual_channels"),
                                      ("--batch_size=100000000", "batch_size")])
def test_a_model_or_batch_that_cannot_fit_in_memory_is_refused_before_anything_is_built(tone_data, tmp_path,
                                                                                        arg, key):
    """--residual_channels=1000000 built 3.4 billion parameters and grew to 16 GB before failing;
    --batch_size=100000000 ran 99 s to 4.6 GB and failed with a message hiding the cause."""
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = stage3(tone_data, run_dir, arg, tiny=False)  # the run: the default model but for ``key``
    took = time.monotonic() - started
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: {arg}: training would need about ") and f"lower --{key}" in result.stderr
    assert took < 10.0, took
    assert not os.path.exists(run_dir / "model.keras") and not os.path.exists(run_dir / "checkpoints")


def test_steps_that_never_end_or_never_start_are_refused(tone_data, tmp_path):
    """--steps=10**23 was accepted; --steps=0 on a fresh run wrote an untrained model as a finished run."""
    run_dir = tmp_path / "run"
    for arg in ("--steps=100000000000000000000000", "--steps=1e23"):
        result = stage3(tone_data, run_dir, arg)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--steps=1" in result.stderr, \
            result.stderr[-2000:]
    zero = stage3(tone_data, run_dir, "--steps=0")
    assert zero.returncode == 2 and zero.stderr.count("\n") == 1, zero.stderr[-2000:]
    assert "--steps=0 on a new run would save an untrained model" in zero.stderr
    assert not os.path.exists(run_dir / "model.keras") and not os.path.exists(run_dir / "model.json")


def test_sample_seconds_that_cannot_fit_in_memory_is_refused_before_training(tone_data, tmp_path):
    """--sample_seconds=1e12 asked for 171 PiB when the first clips were due, after training began."""
    run_dir = tmp_path / "run"
    result = stage3(tone_data, run_dir, "--sample_seconds=1e12", "--sample_every=2", "--steps=4")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith("error: --sample_seconds=1e+12: 2 clip(s) at 1000 Hz need about")
    assert not os.path.exists(run_dir / "checkpoints") and not os.path.exists(run_dir / "model.keras")


@pytest.mark.parametrize("field, value", [("examples_done", "12 windows"), ("elapsed_seconds", None),
                                          ("best_valid_bits_per_sample", "low"), ("examples_done", -4)])
def test_a_garbled_state_json_field_is_a_damaged_checkpoint_not_a_traceback(tmp_path, field, value):
    """A checkpoint whose state.json has a field of the wrong type loaded, and resuming ended in a TypeError."""
    import json

    from test_training import tiny_model_and_optimizer
    from local.store import rundir
    from local.train import loop as training
    run_dir = str(tmp_path / "run")
    model, optimizer = tiny_model_and_optimizer()
    rundir.save_checkpoint(run_dir, 2, model, optimizer, {**rundir.new_state(), "examples_done": 8})
    state_path = os.path.join(rundir.latest_checkpoint(run_dir)[1], "state.json")
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    with open(state_path, "w", encoding="utf-8") as f:
        json.dump(dict(state, **{field: value}), f)
    said = []
    assert rundir.load_newest_good_checkpoint(run_dir, model, optimizer, log=said.append) == (None, None)
    assert len(said) == 1 and f"its state.json has {field}=" in said[0], said
    with pytest.raises(StageError, match="no checkpoint in .* can be loaded"):
        training.resume(run_dir, model, optimizer)
