"""A headless Chromium driven over the DevTools protocol on a pipe (no extra Python package).

``load_page(chromium, url)`` opens one page, waits for its load event and returns what a person
would get: every request and whether it failed, every console/log error, the loaded images, and a
full-page screenshot (PNG bytes). Chromium runs with its own fresh profile and no network services.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
_IMAGES_JS = "JSON.stringify([...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]))"


@dataclasses.dataclass(frozen=True)
class Page:
    """What loading a page produced."""

    requests: list[str]  # URLs requested
    failed: list[str]  # "URL: error" of requests that failed or answered >= 400
    errors: list[str]  # console and log entries of level error
    images: list[tuple[str, bool, int]]  # (src, complete, natural width) of every <img>
    screenshot: bytes


class _Pipe:
    """DevTools messages: JSON terminated by NUL, we write to the browser's fd 3, read its fd 4."""

    def __init__(self, args: list[str], log_path: str):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        # Chromium expects the pipe on fds 3 and 4; bash (dash takes single-digit fds only) moves it
        # there from fds >= 10, which cannot collide with 3 or 4 while the redirections run.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
        for fd in (to_browser, from_browser):
            os.close(fd)
        shell = ["bash", "-c", f'exec "$0" "$@" 3<&{high[0]} 4>&{high[1]} {high[0]}<&- {high[1]}>&-', *args]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(shell, pass_fds=high, stdout=log, stderr=log)
        for fd in high:
            os.close(fd)
        self._log_path = log_path
        self._buffer, self._id, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self.receive(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError(f"no message from Chromium; its log ends:\n{self._log_tail()}")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError(f"Chromium closed the pipe; its log ends:\n{self._log_tail()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def _log_tail(self) -> str:
        with open(self._log_path, errors="replace") as f:
            return "".join(line for line in f.readlines() if "dbus" not in line)[-3000:]

    def close(self) -> None:
        os.close(self._write)
        os.close(self._read)
        self.process.kill()
        self.process.wait(10)


def load_page(chromium: str, url: str, width: int = 1280, height: int = 900, timeout: float = 60) -> Page:
    """Loads ``url`` in a fresh headless Chromium and returns what happened (see :class:`Page`)."""
    profile = tempfile.mkdtemp(prefix="hourglass-chromium-")
    pipe = _Pipe([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"], os.path.join(profile, "log"))
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Log", "Runtime"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.call("Page.navigate", {"url": url}, session=session)
        while not any(e.get("method") == "Page.loadEventFired" for e in pipe.events):
            pipe.events.append(pipe.receive(timeout))
        images = json.loads(
            pipe.call("Runtime.evaluate", {"expression": _IMAGES_JS}, session=session)["result"]["value"]
        )
        size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = pipe.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session=session
        )
        return _page(pipe.events, images, base64.b64decode(shot["data"]))
    finally:
        pipe.close()
        shutil.rmtree(profile, ignore_errors=True)


def _page(events: list[dict], images: list, screenshot: bytes) -> Page:
    urls, requests, failed, errors = {}, [], [], []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
            requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            failed.append(f"{urls.get(params['requestId'], '?')}: {params['errorText']}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['url']}: HTTP {params['response']['status']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            errors.append(str(params["args"]))
    return Page(requests, failed, errors, [tuple(image) for image in images], screenshot)
