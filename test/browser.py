"""Open a page in a real headless Chromium and say what broke: missing images or audio, script errors.

Chromium is driven with its DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON messages ended
by a NUL byte on file descriptors 3 and 4), so no driver library and no websocket are needed.

    result = check_page("data/demo/run/report.html", screenshot_path="docs/report.png")
    result["broken"]   # [{"tag": "img", "src": ..., "detail": ...}], [] when every image and audio source loads
    result["errors"]   # script exceptions, console errors, failed loads

Command line (the README's screenshot)::

    python -m local.browser data/demo/run/report.html docs/report.png

Needs the ``chromium`` binary (Debian package ``chromium``; ``make setup`` installs it); another Chromium or
Chrome can be named with ``WAVEFORMS_CHROMIUM=/path/to/chrome``.
"""
import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time

from local.core.fileio import write_bytes_atomic

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Resolves when every <img> and <audio> has loaded or failed: a list of {tag, src, ok, detail}.
# Lazy images are made eager first, so images below the fold are checked too.
CHECK_MEDIA_JS = """
(() => {
  const wait = (element, ok, events) => new Promise(resolve => {
    if (ok()) return resolve();
    const done = () => resolve();
    events.forEach(name => element.addEventListener(name, done, {once: true}));
    setTimeout(done, 15000);
  });
  const images = Array.from(document.images);
  const audios = Array.from(document.querySelectorAll('audio'));
  images.forEach(img => { img.loading = 'eager'; });
  audios.forEach(audio => { if (audio.readyState === 0 && !audio.error) audio.load(); });
  const pending = images.map(img => wait(img, () => img.complete, ['load', 'error']))
    .concat(audios.map(a => wait(a, () => a.readyState >= 1 || a.error, ['loadedmetadata', 'error'])));
  return Promise.all(pending).then(() => JSON.stringify(
    images.map(img => ({tag: 'img', src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
                        detail: img.naturalWidth + 'x' + img.naturalHeight}))
    .concat(audios.map(a => ({tag: 'audio', src: a.currentSrc || a.src,
                              ok: a.readyState >= 1 && !a.error && a.duration > 0,
                              detail: a.error ? 'error ' + a.error.code : 'duration ' + a.duration})))));
})()
"""


class BrowserError(RuntimeError):
    pass


def chromium_binary():
    """The Chromium to run: ``$WAVEFORMS_CHROMIUM``, else the first of :data:`CANDIDATES` on PATH, else None."""
    explicit = os.environ.get("WAVEFORMS_CHROMIUM")
    if explicit:
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class DevToolsPipe:
    """A Chromium process and its DevTools pipe: :meth:`call` sends a command and returns its result, keeping
    the events that arrive meanwhile in :attr:`events`."""

    def __init__(self, binary=None, width=1280, height=900):
        binary = binary or chromium_binary()
        if not binary:
            raise BrowserError("no Chromium found: install the Debian package chromium (make setup does) "
                               "or set WAVEFORMS_CHROMIUM=/path/to/chrome")
        self.profile = tempfile.mkdtemp(prefix="waveforms-chromium-")
        to_browser_read, self._write_fd = os.pipe()
        self._read_fd, from_browser_write = os.pipe()
        # The child must see its pipe ends as fds 3 (commands in) and 4 (messages out); moved above 10 first
        # so that neither dup2 overwrites the other end.
        def child_fds():
            high_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)
        args = [binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--mute-audio", "--disable-extensions",
                "--disable-background-networking", "--hide-scrollbars", f"--window-size={width},{height}",
                "about:blank"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, pass_fds=(3, 4),
                                        preexec_fn=child_fds)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                stderr = self.process.stderr.read().decode(errors="replace").strip().splitlines()
                raise BrowserError("Chromium exited: " + (stderr[-1] if stderr else "no message"))
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session_id=None, timeout_s=30.0):
        """Send one DevTools command; return its result dict (BrowserError on a protocol error)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for_event(self, method, timeout_s=30.0):
        """Wait until an event ``method`` has arrived (one that came earlier counts); return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events:
                if event["method"] == method:
                    return event
            message = self._read_message(deadline)
            if "method" in message:
                self.events.append(message)

    def close(self):
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _event_errors(events):
    """Script exceptions, console errors and failed loads among the DevTools events, one line each."""
    errors = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append("script error: " + str(details.get("exception", {}).get("description")
                                                 or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append("console error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"log error: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            errors.append(f"load failed: {params.get('errorText')} ({params.get('type', '')})")
    return errors


def check_page(path_or_url, screenshot_path=None, width=1280, max_height=6000, timeout_s=60.0):
    """Load a page in headless Chromium and check it.

    Returns a dict: ``media`` (every img and audio: tag, src, ok, detail), ``broken`` (those not ok),
    ``errors`` (script exceptions, console errors, failed loads), ``title``, and ``screenshot`` (PNG bytes of
    the whole page, at most ``max_height`` pixels tall), also written to ``screenshot_path`` when given.
    """
    url = path_or_url if "://" in path_or_url else pathlib.Path(path_or_url).resolve().as_uri()
    with DevToolsPipe(width=width) as browser:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session_id=session)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session_id=session)
        browser.events.clear()
        browser.call("Page.navigate", {"url": url}, session_id=session)
        browser.wait_for_event("Page.loadEventFired", timeout_s)
        checked = browser.call("Runtime.evaluate", {"expression": CHECK_MEDIA_JS, "awaitPromise": True,
                                                    "returnByValue": True}, session_id=session, timeout_s=timeout_s)
        if "exceptionDetails" in checked:
            raise BrowserError(f"the media check failed: {checked['exceptionDetails'].get('text')}")
        media = json.loads(checked["result"]["value"])
        title = browser.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                             session_id=session)["result"].get("value", "")
        size = browser.call("Page.getLayoutMetrics", session_id=session)["cssContentSize"]
        height = int(min(max_height, max(1, size["height"])))
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session_id=session)
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session_id=session, timeout_s=timeout_s)
        png = base64.b64decode(shot["data"])
        errors = _event_errors(browser.events)
    if screenshot_path:
        write_bytes_atomic(screenshot_path, png)
    return {"url": url, "title": title, "media": media, "broken": [m for m in media if not m["ok"]],
            "errors": errors, "screenshot": png}


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: python -m local.browser PAGE.html [SCREENSHOT.png]", file=sys.stderr)
        return 2
    result = check_page(argv[1], argv[2] if len(argv) == 3 else None)
    print(f"{result['url']}: {len(result['media'])} images and audio sources, {len(result['broken'])} broken, "
          f"{len(result['errors'])} errors")
    for item in result["broken"]:
        print(f"broken {item['tag']}: {item['src']} ({item['detail']})")
    for error in result["errors"]:
        print(error)
    return 1 if result["broken"] or result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
