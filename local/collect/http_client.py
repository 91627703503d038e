"""A polite, safe HTTP client for collecting audio from websites: any site, no site's layout.

Politeness and safety, all in :class:`WebClient`: a browser-like User-Agent, robots.txt per host
(``urllib.robotparser``, its Crawl-delay honoured), ``request_delay_s`` between any two requests,
exponential backoff on 429 (Retry-After honoured, and it pauses every thread; one longer than the request's
own deadline gives that request up at once, holding no other), 5xx, timeouts and dropped connections; only
http(s) URLs on allowed hosts, checked again at every redirect; page and file sizes capped; a file's download
resumes with Range from its ``.partial-`` file and is published (renamed) only when complete and verified
(content type and magic bytes). local/collect/scraping.py reads the FMA site with it.
"""
import contextlib
import email.utils
import hashlib
import os
import re
import socket
import sys
import threading
import time
import urllib.robotparser
from urllib.parse import urljoin, urlsplit

from local.collect.http_rules import audio_format, is_text_content_type, url_problem
from local.core import fileio
from local.store import manifest

MAX_REDIRECTS = 5
MAX_PAGE_BYTES = 20 << 20  # a listing page larger than this is hostile or broken
MAX_RETRY_AFTER_SECONDS = 300.0  # a server asking for a longer pause gets the file reported instead
CHUNK_BYTES = 64 << 10
PARTIAL_MARK = ".partial-"  # a download in progress: .<name>.partial-<url hash>, kept to resume with Range


class FetchError(Exception):
    """A URL that cannot be fetched (or whose answer is refused); the message is one line for the summary."""


class RetryableError(FetchError):
    """A fault worth another try: 429, 5xx, a timeout, a dropped connection. ``wait_seconds``: its Retry-After;
    ``pause_all``: the wait holds every thread's requests (a 429: the whole client is too fast)."""

    def __init__(self, message, wait_seconds=None, pause_all=False):
        super().__init__(message)
        self.wait_seconds = wait_seconds
        self.pause_all = pause_all


def retry_after_seconds(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_too_long(wait_seconds, left_seconds=None, file_timeout_seconds=0.0):
    """Why a request must not wait the ``wait_seconds`` a server's Retry-After asks (more than the
    ``left_seconds`` of its deadline, or than :data:`MAX_RETRY_AFTER_SECONDS`), or "" if it may."""
    if left_seconds is not None and wait_seconds > left_seconds:
        return (f"the server asks to wait {wait_seconds:.0f} s, more than the {left_seconds:.0f} s left of this "
                f"file's file_timeout_s={file_timeout_seconds:g}: given up without waiting, a rerun tries it again")
    if wait_seconds > MAX_RETRY_AFTER_SECONDS:
        return (f"the server asks to wait {wait_seconds:.0f} s, more than the {MAX_RETRY_AFTER_SECONDS:.0f} s a "
                f"request may wait: given up without waiting, a rerun tries it again")
    return ""


class RequestPacer:
    """Spaces every request of every thread at least ``delay_seconds`` apart; a 429 can pause them all."""

    def __init__(self, delay_seconds):
        self.delay_seconds = max(0.0, float(delay_seconds))
        self.lock = threading.Lock()
        self.next_start = 0.0

    def wait(self):
        """Block until this thread may send its next request."""
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.delay_seconds
        if start > now:
            time.sleep(start - now)

    def pause(self, seconds):
        """No request of any thread starts within ``seconds`` from now (a server's Retry-After)."""
        with self.lock:
            self.next_start = max(self.next_start, time.monotonic() + seconds)


class WebClient:
    """Polite HTTP for scraping: User-Agent, robots.txt, pacing, retries, host checks, size caps.

    One ``requests.Session`` per thread (sessions are not documented as thread-safe); robots.txt is read
    once per host. ``allowed_hosts``: hostnames that may be fetched (lowercase).
    """

    def __init__(self, user_agent, allowed_hosts, *, request_delay_seconds=1.0, max_retries=5, timeout_seconds=30.0,
                 backoff_seconds=1.0, log=None, file_timeout_seconds=0.0):
        self.user_agent = user_agent
        self.allowed_hosts = {h.lower() for h in allowed_hosts if h}
        self.pacer = RequestPacer(request_delay_seconds)
        self.max_retries = int(max_retries)
        self.timeout_seconds = float(timeout_seconds)
        self.backoff_seconds = float(backoff_seconds)
        self.file_timeout_seconds = float(file_timeout_seconds or 0.0)  # 0 = no per-file deadline
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.local = threading.local()
        self.robots = {}
        self.robots_lock = threading.Lock()

    def session(self):
        import requests
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.headers.update({"User-Agent": self.user_agent, "Accept-Encoding": "identity"})
        return self.local.session

    # ----- robots.txt
    def robots_for(self, url):
        """(parser, note) for the robots.txt of ``url``'s scheme and host, fetched once (with retries), cached."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        with self.robots_lock:
            if key not in self.robots:
                self.robots[key] = self.read_robots(key + "/robots.txt")
            return self.robots[key]

    def read_robots(self, robots_url):
        """Fetch and parse one robots.txt: (parser, why everything is refused or "").

        As urllib.robotparser does: 404-like answers allow all, 401/403 disallow all; a robots.txt that
        cannot be read at all (5xx or no connection after the retries) disallows all, as RFC 9309 says.
        """
        parser = urllib.robotparser.RobotFileParser(robots_url)
        try:
            status, body, _ = self.with_retries(lambda: self.get_body(robots_url, MAX_PAGE_BYTES, robots=False,
                                                                    ok_statuses=range(200, 500)))
        except FetchError as e:
            parser.disallow_all = True
            note = f"{robots_url} could not be read ({e}): nothing on that host is fetched"
            self.log(note)
            return parser, note
        if status in (401, 403):
            parser.disallow_all = True
            note = (f"{robots_url} answered {status}: the site refuses this client (check user_agent); "
                    f"nothing on that host is fetched")
            self.log(note)
            return parser, note
        if status >= 400:
            parser.allow_all = True
            return parser, ""
        parser.parse(body.decode("utf-8", "replace").splitlines())
        delay = parser.crawl_delay(self.user_agent)
        if delay and float(delay) > self.pacer.delay_seconds:
            # honoured up to the longest pause we accept from a server at all: a hostile robots.txt
            # must not stall the run for a day
            used = min(float(delay), MAX_RETRY_AFTER_SECONDS)
            self.log(f"{robots_url} asks for Crawl-delay {delay} s: using {used:g} s")
            self.pacer.delay_seconds = used
        return parser, ""

    def check(self, url, robots=True):
        """Raise FetchError if ``url`` is not http(s), not on an allowed host, or disallowed by robots.txt."""
        problem = url_problem(url, self.allowed_hosts)
        if problem:
            raise FetchError(problem)
        if robots:
            parser, note = self.robots_for(url)
            if not parser.can_fetch(self.user_agent, url):
                raise FetchError(note or f"robots.txt of {urlsplit(url).netloc} disallows {urlsplit(url).path} "
                                         f"for our user agent: not fetched")

    # ----- requests
    def open(self, url, robots=True, headers=None):
        """GET ``url`` streamed, following redirects by hand so every hop is checked; return the response."""
        import requests
        for _ in range(MAX_REDIRECTS + 1):
            self.check(url, robots)
            self.pacer.wait()
            try:
                response = self.session().get(url, stream=True, allow_redirects=False, headers=headers,
                                              timeout=(self.timeout_seconds, self.timeout_seconds))
            except requests.Timeout:
                raise RetryableError(f"timed out after {self.timeout_seconds:g} s") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                raise RetryableError(f"connection failed ({type(e).__name__})") from None
            except requests.RequestException as e:
                raise FetchError(f"request failed: {type(e).__name__}") from None
            if response.is_redirect and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            return response
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def raise_for_status(self, response, ok_statuses=range(200, 300)):
        """Turn a status outside ``ok_statuses`` into RetryableError (429, 5xx) or FetchError (the rest)."""
        status = response.status_code
        if status in ok_statuses:
            return
        response.close()
        if status == 429:  # every thread pauses, but only once this request is known to wait (with_retries)
            wait_seconds = retry_after_seconds(response.headers.get("Retry-After"))
            raise RetryableError("429 Too Many Requests", wait_seconds, pause_all=wait_seconds is not None)
        if status >= 500:
            wait_seconds = retry_after_seconds(response.headers.get("Retry-After"))
            raise RetryableError(f"{status} {response.reason}", wait_seconds)
        if status == 403:
            raise FetchError("403 Forbidden (the site refuses this client: check user_agent)")
        raise FetchError(f"{status} {response.reason}")

    def with_retries(self, attempt, deadline=None):
        """Call ``attempt()``; on RetryableError wait (Retry-After, else backoff_seconds * 2**k) and try again.

        ``deadline`` (monotonic s, None = none): the request's own (a file's ``file_timeout_s``). A Retry-After
        longer than what is left of it, or than :data:`MAX_RETRY_AFTER_SECONDS`, gives this request up at once
        (FetchError, one line saying so) and pauses no other thread; a backoff never sleeps past it.
        """
        for k in range(self.max_retries + 1):
            try:
                return attempt()
            except RetryableError as e:
                if k == self.max_retries:
                    raise FetchError(f"{e} (gave up after {self.max_retries} retries)") from None
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if e.wait_seconds is not None:
                    too_long = retry_after_too_long(e.wait_seconds, left, self.file_timeout_seconds)
                    if too_long:
                        raise FetchError(f"{e}: {too_long}") from None
                    if e.pause_all:
                        self.pacer.pause(e.wait_seconds)
                    time.sleep(e.wait_seconds)
                else:
                    pause = self.backoff_seconds * 2 ** k
                    time.sleep(pause if left is None else min(pause, left))

    def read_stream(self, response, max_bytes, sink, cap_name="max_file_mb"):
        """Feed the body of ``response`` to ``sink(chunk)``; return its length. Raise on a cut or an overflow
        (``cap_name``: what sets ``max_bytes``, for the message)."""
        import requests
        total = 0
        try:
            for chunk in body_chunks(response):
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError(f"larger than the {max_bytes / 1e6:g} MB cap ({cap_name}): abandoned")
                sink(chunk)
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            if isinstance(e, requests.Timeout) or "timed out" in str(e).lower():  # requests wraps a read timeout
                raise RetryableError(f"read timed out after {self.timeout_seconds:g} s, {total} bytes in") from None
            raise RetryableError(f"connection dropped after {total} bytes ({type(e).__name__})") from None
        finally:
            response.close()
        declared = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if declared.isdigit() and int(declared) != total and not encoded:  # a gzip length counts other bytes
            raise RetryableError(f"connection dropped after {total} of {declared} bytes")
        return total

    def get_body(self, url, max_bytes=None, robots=True, ok_statuses=range(200, 300)):
        """One try at GET ``url`` into memory (at most ``max_bytes``, default MAX_PAGE_BYTES): (status, body
        bytes, final URL). The whole body must arrive within ``timeout_s`` of the answer's headers: a page or
        robots.txt trickled a byte a second keeps each read under ``timeout_s`` but is cut there."""
        max_bytes = MAX_PAGE_BYTES if max_bytes is None else max_bytes
        response = self.open(url, robots)
        self.raise_for_status(response, ok_statuses)
        parts = []
        deadline = time.monotonic() + self.timeout_seconds
        try:
            with cut_at_deadline(response, deadline):
                self.read_stream(response, max_bytes, parts.append, cap_name="a page's cap, MAX_PAGE_BYTES")
        except RetryableError:
            if time.monotonic() < deadline:
                raise
        if time.monotonic() >= deadline:  # cut at the deadline (a body without a length just ends there)
            raise RetryableError(f"not complete within timeout_s={self.timeout_seconds:g} s "
                                 f"({sum(map(len, parts))} bytes in): the server sends too slowly")
        return response.status_code, b"".join(parts), response.url

    def get_page(self, url):
        """GET a page with retries; return (text, final URL). Raises FetchError with a one-line reason."""
        _, body, final_url = self.with_retries(lambda: self.get_body(url))
        return body.decode("utf-8", "replace"), final_url

    def download(self, url, folder, name, max_bytes, expected_sha256=""):
        """Download an audio file to ``folder/name.<ext>`` (ext from its magic bytes), verified, atomically.

        The body streams into ``.<name>.partial-<url hash>`` beside the target; a cut connection (or a killed
        run) leaves it there and the next try asks only for the rest (``Range: bytes=<have>-``). A server
        that ignores Range (200) or answers another range restarts the file from byte 0. The file is
        renamed only when complete, of an audio type and within ``max_bytes``; a resumed file that does not
        match ``expected_sha256`` (when known) is thrown away and fetched whole. Every try of one file
        together must end within ``file_timeout_s`` (0 = no limit; ``timeout_s`` bounds each read).
        Returns the final path.
        """
        deadline = time.monotonic() + self.file_timeout_seconds if self.file_timeout_seconds > 0 else None
        partial = partial_path(folder, name, url)
        received = [0]

        def out_of_time():
            return FetchError(f"not complete within file_timeout_s={self.file_timeout_seconds:g} s "
                              f"({received[0]} bytes in): abandoned, a rerun resumes it")

        def attempt():
            if deadline is not None and time.monotonic() >= deadline:
                raise out_of_time()
            have = os.path.getsize(partial) if os.path.isfile(partial) else 0
            response = self.open(url, headers={"Range": f"bytes={have}-"} if have else None)
            if have and response.status_code == 416:  # our partial is not a prefix the server knows
                response.close()
                remove_quietly(partial)
                raise RetryableError("the server refused to resume (416): starting over", wait_seconds=0.0)
            self.raise_for_status(response)
            content_type = response.headers.get("Content-Type", "")
            if is_text_content_type(content_type):
                response.close()
                remove_quietly(partial)
                raise FetchError(f"not audio: the server sent {content_type.split(';')[0]}")
            resumed = have > 0 and response.status_code == 206 and \
                content_range_start(response.headers.get("Content-Range", "")) == have
            if response.status_code == 206 and not resumed:  # a range we did not ask for: take nothing of it
                response.close()
                remove_quietly(partial)
                raise RetryableError("the server answered another range: starting over", wait_seconds=0.0)
            offset = have if resumed else 0
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and offset + int(declared) > max_bytes:
                response.close()
                remove_quietly(partial)
                raise FetchError(f"larger than the {max_bytes / 1e6:g} MB cap (max_file_mb): "
                                 f"{(offset + int(declared)) / 1e6:.2f} MB announced, not fetched")
            os.makedirs(folder, exist_ok=True)
            head = bytearray()
            if resumed:
                with open(partial, "rb") as f:
                    head.extend(f.read(16))
            received[0] = offset
            keep_partial = False
            try:
                with open(partial, "ab" if resumed else "wb") as f:
                    def sink(chunk):
                        if deadline is not None and time.monotonic() >= deadline:
                            raise out_of_time()
                        received[0] += len(chunk)
                        if len(head) < 16:
                            head.extend(chunk[:16 - len(head)])
                            if len(head) >= 16 and audio_format(bytes(head)) is None:
                                raise FetchError(f"not audio: the body starts with {bytes(head)[:12]!r}")
                        f.write(chunk)
                    try:
                        with cut_at_deadline(response, deadline):
                            total = offset + self.read_stream(response, max_bytes - offset, sink)
                    except RetryableError:
                        keep_partial = True  # the bytes so far are good: the next try resumes after them
                        f.flush()
                        if deadline is not None and time.monotonic() >= deadline:
                            raise out_of_time() from None
                        raise
                if total == 0:
                    raise FetchError("empty response")
                kind = audio_format(bytes(head))
                if kind is None:
                    raise FetchError(f"not audio: the body starts with {bytes(head)[:12]!r}")
                if resumed and expected_sha256 and sha256_of(partial) != expected_sha256:
                    raise RetryableError("the resumed file does not match its known sha256: starting over",
                                         wait_seconds=0.0)
                final = manifest.inside(folder, os.path.join(folder, f"{name}.{kind}"))
                return fileio.publish_file(partial, final)
            finally:
                if not keep_partial:
                    remove_quietly(partial)
        return self.with_retries(attempt, deadline)


def body_chunks(response):
    """The body of a streamed ``response`` in pieces as they arrive (``read1``), so the bytes before a cut
    reach the file (``iter_content`` loses a whole 64 KB read when the connection drops inside it)."""
    import requests
    import urllib3
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:
        yield from response.iter_content(CHUNK_BYTES)
        return
    while True:
        try:
            chunk = read1(CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            raise requests.Timeout("read timed out") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise requests.ConnectionError(str(e)) from None
        if not chunk:
            return
        yield chunk


def partial_path(folder, name, url):
    """Where the download of ``url`` as ``name`` grows until complete: ``.<name>.partial-<sha1(url)[:12]>``."""
    return os.path.join(folder, f".{name}{PARTIAL_MARK}{hashlib.sha1(url.encode('utf-8')).hexdigest()[:12]}")


def content_range_start(value):
    """The first byte of a ``Content-Range: bytes <start>-<end>/<total>`` header, or None if unreadable."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    return int(m.group(1)) if m else None


def sha256_of(path):
    return manifest.sha256_file(path)


def remove_quietly(path):
    with contextlib.suppress(OSError):
        os.remove(path)


@contextlib.contextmanager
def cut_at_deadline(response, deadline):
    """Shut the response's socket down at ``deadline`` (monotonic s; None = never) so a trickling server
    that keeps every single read under ``timeout_s`` still cannot hold one file forever."""
    if deadline is None:
        yield
        return

    def cut():
        sock = getattr(getattr(response.raw, "connection", None), "sock", None) or \
            getattr(getattr(getattr(getattr(response.raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
