"""A real headless browser for the tests: Debian's Chromium, driven over the DevTools protocol (the
protocol Playwright and Selenium use) with the `websockets` client Airflow already depends on.

``scripts/install-debian-package.sh chromium /usr/bin/chromium`` installs the browser; `make test` and .ci/run call it."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on a machine with no internet.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0")


class Browser:
    def __init__(self, profile: Path, width: int = 1280, height: int = 1000):
        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"{CHROMIUM} is missing: run scripts/install-debian-package.sh chromium /usr/bin/chromium (make test does)")
        self.profile = profile
        profile.mkdir(parents=True, exist_ok=True)
        # Chromium's chatter goes to a file: a pipe nobody reads once started would fill and block it.
        self.log_path = profile.parent / f"{profile.name}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                                             f"--window-size={width},{height}", "about:blank"],
                                            stdout=subprocess.DEVNULL, stderr=log)
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            if match := re.search(r"DevTools listening on (ws://\S+)", self.log_path.read_text(errors="replace")):
                url = match.group(1)
            elif self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            else:
                time.sleep(0.2)
        if url is None:
            self.close()
            raise RuntimeError("chromium did not open its DevTools port within 60 s")
        from websockets.sync.client import connect

        self.socket = connect(url, max_size=64 * 1024 * 1024, open_timeout=30)
        self.ids = itertools.count(1)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.version = self.send("Browser.getVersion")["product"]

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.send("Network.setCookie", session=True, url=url, name=name, value=value, httpOnly=True)

    def open(self, url: str) -> int:
        """Load `url` and wait for the page to finish loading; the HTTP status of the document."""
        self.send("Network.enable", session=True)
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": "Page.navigate", "params": {"url": url},
                                     "sessionId": self.session}))
        status, loaded = None, False
        deadline = time.monotonic() + 60
        while not loaded and time.monotonic() < deadline:
            event = json.loads(self.socket.recv(timeout=60))
            if event.get("method") == "Network.responseReceived" and event["params"]["type"] == "Document":
                status = event["params"]["response"]["status"]
            loaded = event.get("method") == "Page.loadEventFired"
        return status

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.socket.close()
        except AttributeError:
            pass
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        shutil.rmtree(self.profile, ignore_errors=True)
