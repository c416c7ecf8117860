"""Headless Chromium, driven over the DevTools protocol on a pipe (no package needed).

Loads a page, reports its images and console errors, and takes full-page
screenshots. Used by the report test, and to make the screenshots under
`results/`:

    python tests/chromium.py results/digits/<run id>/report.html results/digits/<run id>/report.png
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGES = "Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))"


def find_chromium():
    """The path of a Chromium binary, or `None`."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless Chromium with one page; a context manager.

    Chromium reads commands from its file descriptor 3 and writes replies and
    events to 4 (`--remote-debugging-pipe`), as JSON messages ended by NUL.

    Example:

    ```python
    with Chromium() as browser:
        browser.open("file:///tmp/report.html", width=1280)
        print(browser.evaluate(IMAGES), browser.errors)
    ```
    """

    def __init__(self, binary=None, timeout=60):
        self.timeout, self.next_id, self.events, self.buffer = timeout, 0, [], b""
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        commands_in, self.commands = os.pipe()
        self.replies, replies_out = os.pipe()

        def descriptors():  # in the child: the pipe ends on 3 and 4, where Chromium expects them
            ends = [os.dup(commands_in), os.dup(replies_out)]  # first out of the way of 3 and 4
            for target, end in zip((3, 4), ends):
                os.dup2(end, target)  # inheritable, unlike os.pipe()'s ends

        self.process = subprocess.Popen(
            [
                binary or find_chromium(),
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            preexec_fn=descriptors,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_in)
        os.close(replies_out)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=self.session)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, session=None, **params):
        """Sends one command and returns its result; events that arrive meanwhile are kept in `events`."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def open(self, url, width=1280, height=900):
        """Loads `url` in a window of `width` x `height` CSS pixels and waits for its load event."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session=self.session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.events.clear()
        self.send("Page.navigate", session=self.session, url=url)
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading in {self.timeout} s")
            self.events.append(self._read())

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page."""
        return self.send("Runtime.evaluate", session=self.session, expression=expression, returnByValue=True)["result"][
            "value"
        ]

    @property
    def errors(self):
        """Console errors, uncaught exceptions and failed loads seen since the last `open()`."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def screenshot(self, path, width=1280):
        """Writes a PNG of the whole page, `width` CSS pixels wide."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session=self.session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.send("Page.captureScreenshot", session=self.session, format="png", captureBeyondViewport=True)[
            "data"
        ]
        Path(path).write_bytes(base64.b64decode(data))


if __name__ == "__main__":
    page, out = Path(sys.argv[1]).resolve(), sys.argv[2]
    with Chromium() as browser:
        browser.open(page.as_uri())
        broken = [image["alt"] for image in browser.evaluate(IMAGES) if not image["width"]]
        if broken or browser.errors:
            sys.exit(f"{page}: broken images {broken}, console errors {browser.errors}")
        browser.screenshot(out)
    print(f"{out}: screenshot of {page}")
