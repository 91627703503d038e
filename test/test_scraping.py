"""local/collect/scraping.py against a real threaded HTTP server on 127.0.0.1 playing the FMA website.

The server serves genre pages in today's ``data-track-info`` layout and the 2020 ``.playlist-lrg`` layout,
a robots.txt, and real mp3 bytes made with ffmpeg, and injects every fault the client must survive:
429 + Retry-After, 500 then success, a connection dropped mid-body, a response slower than timeout_s,
an HTML page at a fileUrl, oversized files, a hostile id/title, a foreign host and a non-http scheme.
"""
import csv
import hashlib
import html
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import PYTHON, ROOT, encode, make_audio, tone

from local.collect import http_client, http_rules, scraping
from local.store import manifest

UA = "Mozilla/5.0 (X11; Linux x86_64) WaveformsTest/1.0"
TIMEOUT_S = 0.5
FAULT_SETTINGS = dict(page_size=4, user_agent=UA, request_delay_s=0.0, max_retries=2, timeout_s=TIMEOUT_S,
                      concurrency=2, max_file_mb=0.1, backoff_s=0.05, progress=False, log=lambda m: None)


class FakeFma:
    """What the fake site serves and what it saw: routes, per-path hit counts, a request log."""

    def __init__(self, files, genres, robots="User-agent: *\nDisallow: /genre/Secret/\n", file_delay_s=0.0):
        self.files = files            # "/files/<name>" -> (body bytes, content type, fault or None)
        self.genres = genres          # genre -> (layout "modern"|"2020", [track dicts])
        self.robots = robots
        self.file_delay_s = file_delay_s
        self.lock = threading.Lock()
        self.hits = {}
        self.log = []                 # (monotonic time, path, user agent)
        self.in_flight = 0
        self.max_in_flight = 0
        self.ranges = []              # (path, Range header or None) of every file request
        self.bytes_sent = {}          # path -> body bytes written
        self.gate = None              # a threading.Event every file answer waits for, when set up
        self.base = ""

    def hit(self, path, agent):
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            self.log.append((time.monotonic(), path, agent))
            return self.hits[path]

    def file_requests(self):
        return [p for _, p, _ in self.log if p.startswith("/files/")]


def modern_page(tracks, page, page_size, more):
    items = "".join(f'<div class="play-item gcol" data-track-info="{html.escape(json.dumps(t), quote=True)}">'
                    f'<span>{html.escape(str(t.get("title", "")))}</span></div>\n' for t in tracks)
    nxt = f'<a class="next" rel="next" href="?pageSize={page_size}&page={page + 1}">Next</a>' if more else ""
    return f"<html><body><div class='play-items'>{items}</div><div class='pagination-full'>{nxt}</div></body></html>"


def page_2020(tracks, page, more):
    items = "".join(
        f'<div class="play-item gcol gid-4 tid-{t["n"]}"><span class="playtxt">'
        f'<span class="ptxt-artist"><a href="/music/{t["artist"]}">{html.escape(t["artist"])}</a></span>'
        f'<span class="ptxt-track"><a href="/music/{t["artist"]}/x/{t["n"]}">{html.escape(t["title"])}</a></span>'
        f'</span><span class="playicn"><a href="/music/download/{t["handle"]}" class="icn-arrow" '
        f'title="Download"></a></span></div>\n' for t in tracks)
    nxt = f'<a href="?page={page + 1}">NEXT &gt;</a>' if more else ""
    return (f'<html><body><div class="playlist playlist-lrg">{items}</div>'
            f'<div class="pagination-full">{nxt}<span>Showing page {page}</span></div></body></html>')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", content_type="text/html; charset=utf-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        try:
            self.answer()
        except OSError:  # BrokenPipe, ConnectionReset, ENOTCONN
            pass  # the client gave up on a slow answer: that is the point of the fault

    def answer(self):
        site = self.server.site
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        agent = self.headers.get("User-Agent", "")
        count = site.hit(path, agent)
        if not agent.startswith("Mozilla/"):
            return self.send(403, b"<html>Forbidden</html>")
        if path == "/robots.txt":
            return self.send(200, site.robots.encode(), "text/plain")
        if path == "/genres/":
            links = "".join(f'<a href="/genre/{g}/">{g}</a>' for g in site.genres)
            return self.send(200, f"<html><body>{links}</body></html>".encode())
        m = re.fullmatch(r"/genre/([^/]+)/", path)
        if m and m.group(1) in site.genres:
            layout, tracks = site.genres[m.group(1)]
            size = int(query.get("pageSize", ["20"])[0])
            page = int(query.get("page", ["1"])[0])
            chunk = tracks[(page - 1) * size: page * size]
            more = page * size < len(tracks)
            body = modern_page(chunk, page, size, more) if layout == "modern" else page_2020(chunk, page, more)
            return self.send(200, body.encode())
        if path.startswith("/music/download/"):
            return self.send(302, b"", headers=[("Location", f"{site.base}/files/{path.rsplit('/', 1)[1]}.mp3")])
        if path in site.files:
            return self.serve_file(site, path, count)
        return self.send(404, b"<html>Not found</html>")

    def linger(self, seconds):
        """Sleep up to ``seconds``, returning early once the client hangs up (so in-flight counts stay true)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.02)
            if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                raise ConnectionResetError("client went away")

    def serve_file(self, site, path, count):
        body, content_type, fault = site.files[path]
        asked = self.headers.get("Range")
        with site.lock:
            site.in_flight += 1
            site.max_in_flight = max(site.max_in_flight, site.in_flight)
            site.ranges.append((path, asked))
        try:
            if site.gate is not None:
                site.gate.wait(60)
            if fault in ("cut-then-range", "cut-then-ignore-range"):
                start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked else 0
                partial = fault == "cut-then-range" and start > 0
                piece = body[start:] if partial else body
                self.send_response(206 if partial else 200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(piece)))
                if partial:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                sent = piece if count > 1 else piece[: len(piece) // 2]  # the first answer is cut half-way
                self.wfile.write(sent)
                self.wfile.flush()
                with site.lock:
                    site.bytes_sent[path] = site.bytes_sent.get(path, 0) + len(sent)
                if count == 1:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                return
            if fault == "trickle":  # 100 bytes every 0.1 s: no single read ever waits timeout_s
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(0, len(body), 100):
                    self.wfile.write(body[i:i + 100])
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            if fault and fault.startswith("429-always:"):  # Retry-After: the number after the colon
                return self.send(429, b"slow down", "text/plain", [("Retry-After", fault.split(":")[1])])
            if fault == "429-once" and count == 1:
                return self.send(429, b"slow down", "text/plain", [("Retry-After", "1")])
            if fault == "500-once" and count == 1:
                return self.send(500, b"<html>oops</html>")
            if fault == "slow-once" and count == 1:
                self.linger(TIMEOUT_S + 0.5)
                return self.send(200, body, content_type)
            if fault in ("drop-once", "stall-always") and (count == 1 or fault == "stall-always"):
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if fault == "stall-always":
                    self.linger(TIMEOUT_S + 0.5)
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault == "no-length":  # stream until EOF: the size cap must cut it mid-stream
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                for i in range(0, len(body), 8192):
                    self.wfile.write(body[i:i + 8192])
                self.close_connection = True
                return
            if site.file_delay_s:  # half now, half later: a kill lands mid-body
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                time.sleep(site.file_delay_s)
                self.wfile.write(body[len(body) // 2:])
                return
            return self.send(200, body, content_type)
        finally:
            with site.lock:
                site.in_flight -= 1


def serve(site):
    """Start a threaded server for ``site`` on 127.0.0.1; return (server, base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.site = site
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, site.base


def mp3_bytes(folder, name, seconds=1.0, freq_hz=440.0, bitrate=None):
    path = os.path.join(folder, f"{name}.mp3")
    if bitrate:
        encode(path, tone(seconds, 44100, 2, freq_hz), 44100, codec_args=("-b:a", bitrate))
    else:
        make_audio(path, seconds=seconds, freq_hz=freq_hz)
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def fault_site(tmp_path_factory):
    """The fake FMA with every fault; yields (site, base URL, expected good tracks {genre/id: (bytes, row)})."""
    src = str(tmp_path_factory.mktemp("mp3"))
    site = FakeFma({}, {})
    server, base = serve(site)
    port = server.server_address[1]
    good = {}

    def add_file(name, fault=None, body=None, content_type="audio/mpeg", freq=300.0):
        body = body if body is not None else mp3_bytes(src, name, freq_hz=freq)
        site.files[f"/files/{name}.mp3"] = (body, content_type, fault)
        return body

    rock = []

    def rock_track(track_id, fault=None, title=None, file_url=None, body=None, content_type="audio/mpeg",
                   expect_id=None):
        name = f"r{len(rock)}"
        body = add_file(name, fault, body, content_type, freq=200.0 + 37 * len(rock))
        info = {"id": track_id, "title": title or f"Rock song {track_id}", "artistName": f"Band {track_id}",
                "albumTitle": "LP", "url": f"{base}/music/Band/LP/{track_id}",
                "fileUrl": file_url or f"{base}/files/{name}.mp3"}
        rock.append(info)
        if expect_id:
            good[f"Rock/{expect_id}"] = (body, info)

    rock_track(101, expect_id="101")
    rock_track(102, "429-once", expect_id="102")
    rock_track(103, "500-once", expect_id="103")
    rock_track(104, "drop-once", expect_id="104")
    rock_track(105, "slow-once", expect_id="105")
    rock_track(106, body=b"<!DOCTYPE html><html><body>Error 404</body></html>" * 20, content_type="text/html")
    rock_track(107, "no-length", body=mp3_bytes(src, "big1", seconds=6.0, bitrate="192k"))
    rock_track(108, body=mp3_bytes(src, "big2", seconds=6.0, bitrate="192k"))  # Content-Length over the cap
    rock_track("../../y", title="../../x", expect_id="y")
    rock_track(110, file_url=f"http://localhost:{port}/files/foreign.mp3")
    add_file("foreign")
    rock_track(111, file_url=f"ftp://127.0.0.1:{port}/files/r0.mp3")
    rock_track(112, "stall-always")
    rock_track(113, body=b"<html><head><title>Not found</title></head><body></body></html>" * 10)  # as audio/mpeg
    rock_track(114, title='O\'Brien & "the <Co>"', expect_id="114")
    rock.append({"id": 115, "title": "no file"})  # no fileUrl: reported, not fatal
    jazz = []
    for n in range(5):
        handle = f"a{n}b{n}c{n}"
        body = add_file(handle, freq=500.0 + 51 * n)
        t = {"n": 2000 + n, "handle": handle, "artist": f"Trio {n}", "title": f"Standard {n}"}
        jazz.append(t)
        good[f"Jazz/{handle}"] = (body, {"title": t["title"], "artistName": t["artist"],
                                         "fileUrl": f"{base}/music/download/{handle}"})
    site.genres = {"Rock": ("modern", rock), "Jazz": ("2020", jazz), "Secret": ("modern", rock[:1])}
    yield site, base, good
    server.shutdown()


@pytest.fixture(scope="module")
def first_run(fault_site, tmp_path_factory):
    site, base, good = fault_site
    root = tmp_path_factory.mktemp("scrape")
    out_dir = str(root / "out")
    started = len(site.log)
    summary = scraping.scrape_fma(out_dir, ["Rock", "Jazz", "Secret"], 0, base, **FAULT_SETTINGS)
    return root, out_dir, summary, site.log[started:]


def test_every_good_track_is_there_byte_identical(fault_site, first_run):
    site, base, good = fault_site
    _, out_dir, summary, _ = first_run
    assert summary["downloaded"] == len(good), summary["failed"]
    for key, (body, _) in good.items():
        with open(os.path.join(out_dir, *key.split("/")) + ".mp3", "rb") as f:
            assert f.read() == body, key


def test_the_manifest_describes_each_file(fault_site, first_run):
    site, base, good = fault_site
    _, out_dir, _, _ = first_run
    with open(os.path.join(out_dir, "manifest.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) >= set(manifest.MANIFEST_COLUMNS)
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(by_path) == len(good)
    for key, (body, info) in good.items():
        row = by_path[key + ".mp3"]
        assert row["genre"] == key.split("/")[0]
        assert row["track_id"] == key.split("/")[1]
        assert row["title"] == info["title"] and row["artist"] == info["artistName"]
        assert row["source"] == info["fileUrl"]
        assert int(row["bytes"]) == len(body)
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        assert row["split"] == ""
    assert by_path["Rock/y.mp3"]["title"] == "../../x"  # the hostile title is data, never a path


def test_every_bad_track_is_reported_with_its_reason(first_run):
    _, out_dir, summary, _ = first_run
    reasons = {url.rsplit("/", 1)[-1]: why for url, why in summary["failed"]}
    assert "not audio" in reasons["r5.mp3"] and "text/html" in reasons["r5.mp3"]      # HTML page at a fileUrl
    assert "not audio" in reasons["r12.mp3"]                                           # HTML sent as audio/mpeg
    assert "max_file_mb" in reasons["r6.mp3"] and "abandoned" in reasons["r6.mp3"]   # cut mid-stream
    assert "max_file_mb" in reasons["r7.mp3"]                                          # Content-Length too big
    assert "'localhost' is not allowed" in reasons["foreign.mp3"]
    assert "only http(s)" in reasons["r0.mp3"]
    assert "timed out" in reasons["r11.mp3"] and "gave up after 2 retries" in reasons["r11.mp3"]  # stalls always
    assert any("robots.txt" in why and "/genre/Secret/" in why for why in reasons.values())
    assert any("without id or fileUrl" in why for why in reasons.values())
    assert len(summary["failed"]) == 9
    with open(os.path.join(out_dir, "manifest.csv"), encoding="utf-8") as f:
        text = f.read()
    for bad in ("r5.mp3", "r6.mp3", "r7.mp3", "r11.mp3", "r12.mp3", "foreign.mp3"):
        assert bad not in text


def test_nothing_bad_partial_or_outside_out_dir_is_kept(first_run, fault_site):
    root, out_dir, _, _ = first_run
    _, _, good = fault_site
    everything = sorted(os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names)
    # the one file cut on every try keeps its hidden partial, for a rerun to resume with Range; nothing else
    partials = [p for p in everything if http_client.PARTIAL_MARK in p]
    assert [os.path.basename(p).split(http_client.PARTIAL_MARK)[0] for p in partials] == [".112"]
    expected = sorted([os.path.join("out", "manifest.csv")] +
                      [os.path.join("out", *k.split("/")) + ".mp3" for k in good])
    assert sorted(set(everything) - set(partials)) == expected


def test_politeness_user_agent_robots_retry_after_and_concurrency(fault_site, first_run):
    site = fault_site[0]
    log = first_run[3]
    assert log and all(agent == UA for _, _, agent in log)
    paths = [p for _, p, _ in log]
    assert "/robots.txt" in paths and "/genre/Secret/" not in paths
    assert "/files/foreign.mp3" not in site.hits  # the foreign host was never contacted
    times = [t for t, p, _ in log if p == "/files/r1.mp3"]
    assert len(times) == 2 and times[1] - times[0] >= 1.0  # waited for Retry-After: 1
    assert site.hits["/files/r2.mp3"] == 2 and site.hits["/files/r3.mp3"] == 2
    assert site.hits["/files/r11.mp3"] == 3  # first try + max_retries
    assert 1 <= site.max_in_flight <= FAULT_SETTINGS["concurrency"]
    # both layouts were paged: Rock has 16 entries at 4 a page, Jazz 5 at 4 a page
    assert paths.count("/genre/Rock/") == 4 and paths.count("/genre/Jazz/") == 2


def test_second_run_downloads_nothing(fault_site, first_run):
    site, base, good = fault_site
    _, out_dir, _, _ = first_run
    before = len(site.file_requests())
    again = scraping.scrape_fma(out_dir, ["Rock", "Jazz"], 0, base, **FAULT_SETTINGS)
    good_files = {f"/files/{k.split('/')[1]}.mp3" for k in good}
    assert again["downloaded"] == 0 and again["skipped"] == len(good)
    assert not [p for p in site.file_requests()[before:] if p in good_files]


def test_max_tracks_per_genre_stops_paging(fault_site, tmp_path):
    site, base, _ = fault_site
    summary = scraping.scrape_fma(str(tmp_path), ["Jazz"], 2, base, **FAULT_SETTINGS)
    assert summary["downloaded"] == 2 and len(os.listdir(tmp_path / "Jazz")) == 2


def test_requests_are_spaced_by_request_delay_s_across_threads(fault_site, tmp_path):
    site, base, _ = fault_site
    started = len(site.log)
    settings = dict(FAULT_SETTINGS, request_delay_s=0.15, concurrency=3)
    summary = scraping.scrape_fma(str(tmp_path), ["Jazz"], 3, base, **settings)
    assert summary["downloaded"] == 3
    times = [t for t, _, _ in site.log[started:]]
    assert len(times) >= 8  # robots.txt, a page, three redirects, three files
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.12


def test_an_unknown_client_is_told_to_set_user_agent(fault_site, tmp_path):
    site, base, _ = fault_site
    settings = dict(FAULT_SETTINGS, user_agent="python-requests/2.34")
    summary = scraping.scrape_fma(str(tmp_path), ["Rock"], 0, base, **settings)
    assert summary["downloaded"] == 0
    assert "user_agent" in summary["failed"][0][1]


@pytest.fixture
def calm_site(tmp_path):
    """Six good tracks whose bodies arrive in two halves 0.3 s apart, listed by /genres/."""
    src = str(tmp_path / "src")
    os.makedirs(src)
    site = FakeFma({}, {}, file_delay_s=0.3)
    server, base = serve(site)
    tracks, bodies = [], {}
    for n in range(6):
        body = mp3_bytes(src, f"c{n}", freq_hz=250.0 + 40 * n)
        site.files[f"/files/c{n}.mp3"] = (body, "audio/mpeg", None)
        tracks.append({"id": 300 + n, "title": f"Calm {n}", "artistName": "Quiet", "albumTitle": "",
                       "url": "", "fileUrl": f"{base}/files/c{n}.mp3"})
        bodies[str(300 + n)] = body
    site.genres = {"Calm": ("modern", tracks)}
    yield site, base, bodies
    server.shutdown()


def test_a_run_killed_part_way_then_rerun_ends_complete(calm_site, tmp_path):
    site, base, bodies = calm_site
    out_dir = str(tmp_path / "raw")
    args = ["--source=fma", f"--out_dir={out_dir}", f"--fma_base_url={base}", "--page_size=4",
            f"--user_agent={UA}", "--request_delay_s=0", "--timeout_s=5", "--concurrency=1", "--backoff_s=0.05"]
    script = os.path.join(ROOT, "run_webscraper.py")
    first = subprocess.Popen([PYTHON, script, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest_path = os.path.join(out_dir, "manifest.csv")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(manifest.read_manifest(out_dir)) < 2:
        time.sleep(0.05)
    time.sleep(0.15)  # into the next body's pause
    first.send_signal(signal.SIGKILL)
    first.communicate()
    kept = manifest.read_manifest(out_dir)
    assert 2 <= len(kept) < len(bodies), "the kill should land part-way"
    for track_id in kept:  # whatever the manifest names is complete
        assert manifest.have_track(out_dir, kept, track_id)
    requested_before = len(site.file_requests())
    rerun = subprocess.run([PYTHON, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(bodies) - len(kept)} new, {len(kept)} already had, 0 failed" in rerun.stdout
    # only the missing tracks were fetched again
    assert len(site.file_requests()) - requested_before == len(bodies) - len(kept)
    final = manifest.read_manifest(out_dir)
    assert set(final) == set(bodies)
    for track_id, body in bodies.items():
        with open(os.path.join(out_dir, "Calm", f"{track_id}.mp3"), "rb") as f:
            assert f.read() == body
    assert sorted(os.listdir(os.path.join(out_dir, "Calm"))) == sorted(f"{t}.mp3" for t in bodies)
    with open(manifest_path, encoding="utf-8") as f:
        assert len(f.read().strip().splitlines()) == 1 + len(bodies)
    with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["genres"] == []  # no --genres: the genres came from /genres/


def test_two_runs_at_once_on_one_out_dir_one_is_refused_in_one_line(calm_site, tmp_path):
    """Two real stage-1 processes started at once: the one that locks out_dir first fetches (its files are held
    back by the server until the other has ended), the other is refused in one line; no row twice."""
    site, base, bodies = calm_site
    site.file_delay_s = 0.0
    site.gate = threading.Event()
    out_dir = str(tmp_path / "raw")
    command = [PYTHON, os.path.join(ROOT, "run_webscraper.py"), "--source=fma", f"--out_dir={out_dir}",
               f"--fma_base_url={base}", f"--user_agent={UA}", "--request_delay_s=0", "--timeout_s=60",
               "--concurrency=1", "--genres=Calm"]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    deadline = time.monotonic() + 60
    # until one has ended (refused) or both are downloading (nothing stopped the second)
    while time.monotonic() < deadline and all(r.poll() is None for r in runs) and site.in_flight < 2:
        time.sleep(0.02)
    site.gate.set()
    outputs = [r.communicate(timeout=120) for r in runs]
    results = [(r.pid, r.returncode, out, err) for r, (out, err) in zip(runs, outputs)]
    finished = [r for r in results if r[1] == 0]
    refused = [r for r in results if r[1] != 0]
    assert len(finished) == 1 and len(refused) == 1, results
    _, status, _, err = refused[0]
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {out_dir} is in use by process {finished[0][0]} (stage 1)"), err
    assert f"{len(bodies)} new, 0 already had, 0 failed" in finished[0][2]
    with open(os.path.join(out_dir, "manifest.csv"), encoding="utf-8") as f:
        assert len(f.read().strip().splitlines()) == 1 + len(bodies)  # every row once
    assert not [n for n in os.listdir(os.path.join(out_dir, "Calm")) if ".partial-" in n]


@pytest.mark.parametrize("file_timeout_s", [0, 3])
def test_a_huge_retry_after_gives_that_file_up_at_once_and_holds_no_other(tmp_path, file_timeout_s):
    """Retry-After: 99999 (and, with a file deadline, one of 10 s: more than that file has left) on two files of
    six: each is given up in one line at its first answer; the other four come at once (the old code paused
    every request 300 s at each such answer: past this test's timeout)."""
    src = str(tmp_path / "src")
    os.makedirs(src)
    site = FakeFma({}, {})
    server, base = serve(site)
    faults = {"h0": "429-always:99999", "h1": "429-always:10" if file_timeout_s else "429-always:99999"}
    tracks = []
    for n in range(6):
        name = f"h{n}"
        site.files[f"/files/{name}.mp3"] = (mp3_bytes(src, name, seconds=0.3, freq_hz=250.0 + 40 * n),
                                            "audio/mpeg", faults.get(name))
        tracks.append({"id": 400 + n, "title": f"Busy {n}", "artistName": "B", "albumTitle": "", "url": "",
                       "fileUrl": f"{base}/files/{name}.mp3"})
    site.genres = {"Busy": ("modern", tracks)}
    out_dir = str(tmp_path / "raw")
    try:
        started = time.monotonic()
        result = subprocess.run([PYTHON, os.path.join(ROOT, "run_webscraper.py"), "--source=fma",
                                 f"--out_dir={out_dir}", f"--fma_base_url={base}", f"--user_agent={UA}",
                                 "--request_delay_s=0", "--timeout_s=5", "--concurrency=2", "--genres=Busy",
                                 "--backoff_s=0.05", f"--file_timeout_s={file_timeout_s}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert "fma: 4 new, 0 already had, 2 failed" in result.stdout, result.stdout
    assert elapsed < 20
    assert site.hits["/files/h0.mp3"] == 1 and site.hits["/files/h1.mp3"] == 1  # no retry of either
    said = [line for line in result.stderr.splitlines() if "asks to wait" in line]
    assert len(said) == 2, result.stderr  # one line each
    assert any("Busy/400: 429 Too Many Requests: the server asks to wait 99999 s" in line for line in said)
    if file_timeout_s:
        assert any("Busy/401: 429 Too Many Requests: the server asks to wait 10 s, more than the 3 s left of "
                   "this file's file_timeout_s=3" in line for line in said), said
    # the four good files came without waiting on the two: their requests are within a few seconds of the start
    good = [t for t, path, _ in site.log if path in {f"/files/h{n}.mp3" for n in range(2, 6)}]
    assert len(good) == 4 and max(good) - min(t for t, _, _ in site.log) < 10
    with open(os.path.join(out_dir, "failures.csv"), encoding="utf-8") as f:
        assert f.read().count("asks to wait") == 2


@pytest.fixture
def resume_site(tmp_path):
    src = str(tmp_path / "src")
    os.makedirs(src)
    site = FakeFma({}, {})
    server, base = serve(site)
    bodies = {}
    for n, fault in enumerate(("cut-then-range", "cut-then-ignore-range", "trickle")):
        body = mp3_bytes(src, f"s{n}", seconds=2.0, freq_hz=250.0 + 40 * n)
        site.files[f"/files/s{n}.mp3"] = (body, "audio/mpeg", fault)
        bodies[fault] = (str(400 + n), body)
    tracks = [{"id": int(track_id), "title": fault, "artistName": "", "albumTitle": "", "url": "",
               "fileUrl": f"{base}/files/s{n}.mp3"} for n, (fault, (track_id, _)) in enumerate(bodies.items())]
    site.genres = {"Resume": ("modern", tracks)}
    yield site, base, bodies
    server.shutdown()


def test_a_cut_download_resumes_with_range_and_a_server_ignoring_range_restarts(resume_site, tmp_path):
    site, base, bodies = resume_site
    out_dir = str(tmp_path / "raw")
    settings = dict(FAULT_SETTINGS, timeout_s=5.0, max_file_mb=5.0, file_timeout_s=1.5)
    summary = scraping.scrape_fma(out_dir, ["Resume"], 0, base, **settings)
    for fault in ("cut-then-range", "cut-then-ignore-range"):
        track_id, body = bodies[fault]
        with open(os.path.join(out_dir, "Resume", f"{track_id}.mp3"), "rb") as f:
            assert f.read() == body, fault
    resumed_path = "/files/s0.mp3"
    asked = [r for p, r in site.ranges if p == resumed_path]
    assert asked == [None, f"bytes={len(bodies['cut-then-range'][1]) // 2}-"]
    # resuming sent each byte once; the server that ignored Range sent the file again from byte 0
    assert site.bytes_sent[resumed_path] == len(bodies["cut-then-range"][1])
    assert site.bytes_sent["/files/s1.mp3"] == len(bodies["cut-then-ignore-range"][1]) * 3 // 2
    # the trickling server keeps each read under timeout_s=5 but not the whole file under file_timeout_s
    trickle_id, _ = bodies["trickle"]
    reasons = dict(summary["failed"])
    assert "file_timeout_s=1.5" in reasons[f"{base}/files/s2.mp3"]
    assert not os.path.exists(os.path.join(out_dir, "Resume", f"{trickle_id}.mp3"))
    assert summary["downloaded"] == 2
    assert sorted(n for n in os.listdir(os.path.join(out_dir, "Resume")) if n.endswith(".mp3")) == \
        sorted(f"{bodies[f][0]}.mp3" for f in ("cut-then-range", "cut-then-ignore-range"))


def test_the_partial_of_a_killed_run_is_resumed_and_checked_against_the_known_hash(resume_site, tmp_path):
    site, base, bodies = resume_site
    url = f"{base}/files/s0.mp3"
    folder = str(tmp_path / "g")
    os.makedirs(folder)
    track_id, body = bodies["cut-then-range"]
    site.hits["/files/s0.mp3"] = 1  # the server's next answers are whole: only the Range decides
    client = http_client.WebClient(UA, {"127.0.0.1"}, request_delay_seconds=0.0, max_retries=2, timeout_seconds=5.0,
                                backoff_seconds=0.05, log=lambda m: None)
    # a previous run left the first half; the rest comes by Range and the result matches the known hash
    with open(http_client.partial_path(folder, track_id, url), "wb") as f:
        f.write(body[:1000])
    final = client.download(url, folder, track_id, 10 << 20, hashlib.sha256(body).hexdigest())
    with open(final, "rb") as f:
        assert f.read() == body
    assert site.ranges[-1] == ("/files/s0.mp3", "bytes=1000-")
    # a partial whose bytes are not the file's: the hash check throws it away and fetches it whole
    os.remove(final)
    with open(http_client.partial_path(folder, track_id, url), "wb") as f:
        f.write(b"ID3" + b"x" * 997)
    final = client.download(url, folder, track_id, 10 << 20, hashlib.sha256(body).hexdigest())
    with open(final, "rb") as f:
        assert f.read() == body
    assert site.ranges[-2:] == [("/files/s0.mp3", "bytes=1000-"), ("/files/s0.mp3", None)]
    assert os.listdir(folder) == [os.path.basename(final)]


# --------------------------------------------------------------------------- pure helpers

def test_audio_format_knows_real_files_and_refuses_pages(tmp_path):
    for ext, kind in (("mp3", "mp3"), ("flac", "flac"), ("ogg", "ogg"), ("wav", "wav"), ("m4a", "m4a"),
                      ("aiff", "aiff")):
        path = make_audio(str(tmp_path / f"x.{ext}"), seconds=0.3)
        with open(path, "rb") as f:
            assert http_rules.audio_format(f.read(16)) == kind, ext
    for page in (b"<!DOCTYPE html>\n<html>", b"  <html><body>", b'{"error": "no"}', b"\xff\x00\x00\x00", b""):
        assert http_rules.audio_format(page) is None


def test_retry_after_reads_seconds_and_http_dates():
    assert http_client.retry_after_seconds("7") == 7.0
    assert http_client.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert http_client.retry_after_seconds("soon") is None and http_client.retry_after_seconds(None) is None


def test_url_rules():
    hosts = {"freemusicarchive.org", "files.freemusicarchive.org"}
    assert http_rules.url_problem("https://files.freemusicarchive.org/a.mp3", hosts) == ""
    assert "not allowed" in http_rules.url_problem("https://evil.example/a.mp3", hosts)
    assert "only http(s)" in http_rules.url_problem("file:///etc/passwd", hosts)
    assert "only http(s)" in http_rules.url_problem("javascript:alert(1)", hosts)
    assert scraping.genre_page_url("https://x.org/", "Old-Time / Historic", 50, 3) == \
        "https://x.org/genre/Old-Time_%2F_Historic/?pageSize=50&page=3"
    assert scraping.track_id_from_link("https://x.org/track/some-song/download") == "some-song"
    assert scraping.track_id_from_link("https://x.org/music/download/ab12") == "ab12"


def test_a_broken_page_entry_is_reported_and_the_rest_read():
    page = ('<div data-track-info="{not json"></div>'
            '<div data-track-info="[1, 2]"></div>'
            '<div data-track-info=\'{"id": 5, "title": "ok", "fileUrl": "/files/5.mp3"}\'></div>')
    tracks, has_next, problems = scraping.parse_genre_page(page, "https://x.org/genre/Rock/?page=1")
    assert [t["id"] for t in tracks] == ["5"] and tracks[0]["file_url"] == "https://x.org/files/5.mp3"
    assert len(problems) == 2 and not has_next
