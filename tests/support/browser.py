"""Headless Chromium for the tests, driven over the DevTools protocol.

The standard library has no WebSocket client, so this file carries a minimal one
(RFC 6455: the opening handshake, masked text frames out, frames in, ping/pong and
close), just enough to speak the DevTools protocol's JSON messages.
"""

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, List, Optional
from urllib.parse import urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Root on a closed network: no sandbox (it needs a user namespace), nothing fetched.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
]


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class WebSocketClosed(ConnectionError):
    pass


class WebSocket:
    """A WebSocket client connection: text messages in and out."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ws":
            raise ValueError(f"only ws:// URLs: {url}")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(
            f"GET {path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1:2] != ["101"]:
            raise ConnectionError(f"WebSocket handshake refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise ConnectionError("WebSocket handshake: wrong Sec-WebSocket-Accept")

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise WebSocketClosed("the browser closed the connection")
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        """A client's frames are masked (RFC 6455 5.3)."""
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        repeated = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        """The next text message (fragments joined; pings answered)."""
        parts: List[bytes] = []
        while True:
            b0, b1 = self._take(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            mask = self._take(4) if b1 & 0x80 else None
            payload = self._take(n)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode == 0x8:
                raise WebSocketClosed("the browser sent a close frame")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class PageError(AssertionError):
    pass


class Browser:
    """One headless Chromium with one page; `events` collects what the page reported
    (JavaScript exceptions, console errors)."""

    def __init__(self, logdir: Path, width: int = 1280, height: int = 900) -> None:
        binary = find_chromium()
        if binary is None:
            raise RuntimeError("chromium is not installed")
        self.profile = tempfile.mkdtemp(prefix="thepusher-chromium-")
        self.log = logdir / "chromium.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.ids = 0
        self.errors: List[str] = []  # JavaScript exceptions and console errors of the page
        self.dialogs: List[str] = []  # the messages of the confirm()s it showed (all accepted)
        self.ws: Optional[WebSocket] = None
        try:
            self.ws = WebSocket(self._page_url(), timeout=60)
            self.call("Runtime.enable")
            self.call("Page.enable")
            self.size(width, height)
        except BaseException:
            self.close()
            raise

    def _page_url(self) -> str:
        """Chromium prints its DevTools address; the page's own socket is in /json/list."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited:\n{self.log.read_text(errors='replace')}")
            for line in self.log.read_text(errors="replace").splitlines():
                if "DevTools listening on ws://" in line:
                    netloc = urlsplit(line.split("DevTools listening on ", 1)[1].strip()).netloc
                    with urllib.request.urlopen(f"http://{netloc}/json/list", timeout=10) as r:
                        pages = [t for t in json.load(r) if t.get("type") == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise RuntimeError(f"chromium gave no DevTools address:\n{self.log.read_text(errors='replace')}")

    def call(self, method: str, **params: Any) -> dict:
        self.ids += 1
        me = self.ids
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == me:
                if "error" in msg:
                    raise PageError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Page.javascriptDialogOpening":
            # confirm() blocks the page, and the evaluate that clicked waits on it: answer
            # "OK" without waiting for the reply (it arrives as an unclaimed message).
            self.dialogs.append(params.get("message", ""))
            self.ids += 1
            self.ws.send(json.dumps({"id": self.ids, "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}}))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", "?"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise PageError(d.get("exception", {}).get("description") or d.get("text"))
        return result["result"].get("value")

    def text(self) -> str:
        """What the page shows, as text (for failure messages)."""
        try:
            return str(self.evaluate("document.body.innerText"))[:4000]
        except (OSError, PageError) as e:
            return f"(cannot read the page: {e})"

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", 30, f"{url} to load")

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({expression}); the page "
                                     f"shows:\n{self.text()}\nscript errors: {self.errors}")
            time.sleep(0.05)

    def size(self, width: int, height: int, mobile: bool = False) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)

    def screenshot(self, path: Path, width: int, height: int, mobile: bool = False) -> None:
        """The whole page at this viewport width (taller than `height` if the page is)."""
        self.size(width, height, mobile)
        time.sleep(0.2)  # let the layout settle at the new size
        full = self.call("Page.getLayoutMetrics")["cssContentSize"]
        tall = max(height, int(full["height"]) + 1)
        self.size(width, tall, mobile)
        shot = self.call("Page.captureScreenshot", format="png",
                         clip={"x": 0, "y": 0, "width": width, "height": tall, "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        self.size(width, height, mobile)

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.call("Browser.close")
            except (OSError, PageError):
                pass
            self.ws.close()
        elif self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # it never gave us a page to close
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._logf.close()
        shutil.rmtree(self.profile, ignore_errors=True)
