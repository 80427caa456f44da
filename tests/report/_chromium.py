"""Open a page in headless Chromium and report what its console said, with a screenshot.

Speaks the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages separated by NUL
bytes on file descriptors 3 and 4), so it needs nothing beyond the standard library: console
calls, uncaught exceptions and the browser's own log entries (a resource that failed to load,
a blocked request) all arrive as events.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

__all__ = ["find_chromium", "Loaded", "load"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary, or None."""
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Loaded:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, error log entries
    messages: list[str] = field(default_factory=list)  # every console message and log entry
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    screenshot: bytes = b""  # PNG of the whole page
    height: int = 0  # CSS pixels


class _Pipe:
    def __init__(self, binary: str, profile: str):
        to_browser_r, self._write = os.pipe()
        self._read, from_browser_w = os.pipe()
        # the child's pipe ends away from 3 and 4, where the shell below puts them
        to_browser_r, from_browser_w = (_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # the browser reads commands on fd 3 and writes replies on fd 4: a small trampoline puts
        # the pipe ends there and becomes the browser (sh cannot name descriptors above 9)
        trampoline = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(to_browser_r), str(from_browser_w), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_browser_r, from_browser_w),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0
    ) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._receive(deadline):
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events += self._receive(deadline)

    def _receive(self, deadline: float) -> list[dict]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\0")
        return [json.loads(m) for m in complete if m]

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):  # already gone: the process is reaped below
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


def _above(fd: int, low: int) -> int:
    """``fd`` moved to a descriptor number >= ``low`` (the original is closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return moved


def load(path, *, width: int = 1280, settle: float = 0.5, binary: str | None = None) -> Loaded:
    """Load the file ``path`` in headless Chromium; return its console errors and a screenshot."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary")
    url = "file://" + os.path.abspath(path)
    with tempfile.TemporaryDirectory() as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            pipe.events.clear()
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_for("Page.loadEventFired", timeout=60)
            time.sleep(settle)  # late console messages
            pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)  # drains pending events
            height = int(
                pipe.send(
                    "Runtime.evaluate",
                    {"expression": "document.documentElement.scrollHeight", "returnByValue": True},
                    session=session,
                )["result"]["value"]
            )
            shot = pipe.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                },
                session=session,
                timeout=120,
            )
            loaded = Loaded(screenshot=base64.b64decode(shot["data"]), height=height)
            for event in pipe.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    text = " ".join(
                        str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
                    )
                    loaded.messages.append(f"console.{params.get('type')}: {text}")
                    if params.get("type") in ("error", "assert"):
                        loaded.errors.append(loaded.messages[-1])
                elif method == "Runtime.exceptionThrown":
                    details = params.get("exceptionDetails", {})
                    loaded.errors.append(
                        f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
                    )
                elif method == "Log.entryAdded":
                    entry = params.get("entry", {})
                    loaded.messages.append(
                        f"log.{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}"
                    )
                    if entry.get("level") == "error":
                        loaded.errors.append(loaded.messages[-1])
                elif method == "Network.requestWillBeSent":
                    loaded.requests.append(params.get("request", {}).get("url", ""))
                elif method == "Network.loadingFailed":
                    loaded.errors.append(f"loading failed: {params.get('errorText')}")
            return loaded
        finally:
            pipe.close()
