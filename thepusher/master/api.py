"""HTTP routes of the master: the JSON API, the status page, /static/, /boot/ and uploads.

One small handler method per route, like http.server's own do_GET: everything it
needs comes from the server object (controller, state, static dir, uploads, access).
Who may call what is access.py's; what the calls do, control.py's and uploads.py's.
"""

import json
import logging
import pkgutil
import socket
from http.server import BaseHTTPRequestHandler
from typing import Dict, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from thepusher import __version__
from thepusher.master import access, events, files, metrics, nextboot, ranges, upload_body
from thepusher.master.errors import ApiError

log = logging.getLogger("thepusher.http")

MAX_BODY = 64 * 1024
WEB = {  # the status page's files, from inside the package (works from the zipapp)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/grid.js": ("grid.js", "text/javascript; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
UPLOADS = "/api/images/"  # PUT UPLOADS + NAME stores an image
# The page loads only its own script and stylesheet and talks only to the master.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")


# Every route: its path (or a prefix, the rest passed on), its method, its handler.
ROUTES = {
    **{path: ("GET", "get_web") for path in WEB},
    "/api/status": ("GET", "get_status"),
    "/api/events": ("GET", "get_events"),
    "/metrics": ("GET", "get_metrics"),
    "/api/next": ("GET", "get_next"),
    "/api/range": ("GET", "get_range"),
    "/api/free-map": ("GET", "get_free_map"),
    "/api/register": ("POST", "post_register"),
    "/api/ready": ("POST", "post_ready"),
    "/api/report": ("POST", "post_report"),
    "/api/next-boot": ("POST", "post_next_boot"),
    "/boot.ipxe": ("GET", "get_boot_script"),
}
HEAD_ROUTES = ("get_static", "get_boot")  # files: UEFI HTTP boot asks their size first
PREFIX_ROUTES = {
    "/static/": ("GET", "get_static"),
    "/boot/": ("GET", "get_boot"),
    "/api/groups/": ("POST", "post_group"),
    "/api/hosts/": ("POST", "post_host"),
    UPLOADS: ("PUT", "put_image"),
}


class Handler(BaseHTTPRequestHandler):
    server_version = f"thepusher/{__version__}"
    protocol_version = "HTTP/1.1"
    # Before a request line is understood, answer as HTTP/1.0 (status line and headers,
    # so the error is JSON like every other), not as HTTP/0.9 (a bare body).
    default_request_version = "HTTP/1.0"
    timeout = 60  # a silent connection cannot hold a server thread forever

    def do_GET(self) -> None:
        self._dispatch()

    # A wrong method on a known path is 405 naming the right one, not http.server's 501.
    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def handle_expect_100(self) -> bool:
        """An upload is told to send its body (100 Continue) only once its name and the
        free space are checked (put_image), so a refused upload sends nothing; any other
        request goes on at once."""
        try:
            upload = self.command == "PUT" and urlsplit(self.path).path.startswith(UPLOADS)
        except ValueError:  # a malformed target: _dispatch answers 400
            upload = False
        if upload:
            return True
        return super().handle_expect_100()

    # -- routes -------------------------------------------------------------------

    def get_web(self) -> None:
        name, ctype = WEB[urlsplit(self.path).path]
        page = {"Content-Security-Policy": PAGE_CSP} if name.endswith(".html") else None
        self._send(200, pkgutil.get_data("thepusher", f"web/{name}") or b"", ctype, page)

    def get_status(self) -> None:
        self._send(200, self.server.view.snapshot()[1], "application/json")

    def get_events(self) -> None:
        events.serve(self)

    def get_metrics(self) -> None:
        status, _ = self.server.view.snapshot()
        text = metrics.render(status, self.server.state.history.finished())
        self._send(200, text.encode(), metrics.CONTENT_TYPE)

    def get_next(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            wait = float(query.get("wait", ["0"])[0])
        except ValueError:
            raise ApiError(400, "wait must be a number of seconds") from None
        self._json(200, self.server.controller.next_action(self._host(), wait))

    def get_range(self) -> None:
        """Stream bytes a hop lacks after a skip (gap fill), straight from the image
        file (ranges.py)."""
        query = parse_qs(urlsplit(self.path).query)
        try:
            session = query["session"][0]
            offset = int(query["offset"][0])
            length = int(query["length"][0])
        except (KeyError, ValueError):
            raise ApiError(400, "need session, offset and length") from None
        mac = self.headers.get("X-Thepusher-Auth", "")
        image, runs, record_size = self.server.controller.image_range(session, offset, length, mac)
        records = query.get("records") == ["1"]
        ranges.send(self, image, runs, offset, length, record_size if records else 0)

    def get_free_map(self) -> None:
        """The free map of a round's compressed image, for its hops (freemap.encode)."""
        session = parse_qs(urlsplit(self.path).query).get("session", [""])[0]
        answer = self.server.controller.free_map(session, self.headers.get("X-Thepusher-Auth", ""))
        self._send(200, answer, "application/octet-stream")

    def post_register(self) -> None:
        self._json(200, self.server.controller.register(self._host(), self._body()))

    def post_ready(self) -> None:
        self._json(200, self.server.controller.ready(self._host(), self._body()))

    def post_report(self) -> None:
        self._json(200, self.server.controller.report(self._host(), self._body()))

    def post_group(self, rest: str) -> None:
        """`POST /api/groups/NAME/start|retry|abort|wake`: a person steers a group."""
        name, _, action = rest.rpartition("/")
        ctl = self.server.controller
        calls = {
            "start": ctl.start_group,
            "retry": ctl.retry_group,
            "abort": lambda group: ctl.abort_group(group, f"the admin at {self._host()}"),
            "wake": ctl.wake_group,
        }
        if not name or action not in calls:
            raise ApiError(404, f"no such endpoint: POST /api/groups/{rest} "
                                f"(actions: {', '.join(calls)})")
        self._body()  # read, so that a keep-alive connection stays in step
        self.server.access.admin(self._request())
        self._json(200, calls[action](unquote(name)))

    def post_host(self, rest: str) -> None:
        """`POST /api/hosts/HOST/group` with `{"group": NAME}`: add an unassigned client."""
        host, _, what = rest.rpartition("/")
        if not host or what != "group":
            raise ApiError(404, f"no such endpoint: POST /api/hosts/{rest}")
        body = self._body()
        self.server.access.admin(self._request())
        group = body.get("group")
        if not isinstance(group, str) or not group:
            raise ApiError(400, 'body must be {"group": "NAME"}')
        self._json(200, self.server.controller.assign_host(unquote(host), group))

    def put_image(self, name: str) -> None:
        """`PUT /api/images/NAME`: store an uploaded image (put-image, curl -T; uploads.py).
        The connection closes afterwards: a refused upload's body was not read."""
        self.close_connection = True
        try:
            self.server.access.upload(self._request())
            self.connection.settimeout(self.server.uploads.io_timeout)
            answer = self.server.uploads.receive(
                unquote(name), self.headers, self.rfile, self._host(), self._continue,
            )
        except ApiError as e:
            self._refuse_upload(e)
            return
        self._json(201, answer)

    def get_static(self, rel: str) -> None:
        files.send(self, files.resolve(self.server.static_dir, rel, "/static/", "-s"))

    def get_boot(self, rel: str) -> None:
        files.send(self, files.resolve(self.server.boot_dir, rel, "/boot/", "--boot"))

    def get_boot_script(self) -> None:
        """`GET /boot.ipxe[?mac=M&platform=P]`: what a network-booting machine boots
        (nextboot.py). Without a MAC, a script that asks again with it."""
        query = parse_qs(urlsplit(self.path).query)
        master = self.headers.get("Host") or "%s:%d" % self.connection.getsockname()[:2]
        if "mac" not in query:
            text = nextboot.chain_script(master)
        else:
            text = self.server.boot_desk.script(query["mac"][0], query.get("platform", [""])[0],
                                                self._host(), master)
        self._send(200, text.encode(), "text/plain; charset=utf-8")

    def post_next_boot(self) -> None:
        """`POST /api/next-boot` with `{"targets": [GROUP or HOST, ...], "boot": "image" |
        "put" | "clear", "device": DEV}`: what those hosts boot next from the network."""
        body = self._body()
        self.server.access.admin(self._request())
        targets = body.get("targets")
        self._json(200, nextboot.mark(self.server.state, targets if isinstance(targets, list) else [],
                                      str(body.get("boot", "")), str(body.get("device", "")),
                                      self.server.boot_dir is not None))

    # -- plumbing -----------------------------------------------------------------

    def _dispatch(self) -> None:
        self._body_taken = False
        try:
            path = urlsplit(self.path).path
        except ValueError:  # e.g. "//[": an unbalanced IPv6 bracket
            path = None
        try:
            if path is None:
                raise ApiError(400, f"malformed request target {self.path[:200]!r}")
            method, name, rest = _route(path)
            if name is None:
                raise ApiError(404, f"no such endpoint: {self.command} {path}")
            head = self.command == "HEAD" and name in HEAD_ROUTES
            if method != self.command and not head:
                raise ApiError(405, f"{self.command} is not allowed on {path}: use {method}",
                               {"Allow": method})
            if rest is None:
                getattr(self, name)()
            else:
                getattr(self, name)(rest)
        except ApiError as e:
            self._json(e.status, {"error": e.message}, e.headers)
        except ConnectionError:  # the peer went away while it was answered: nobody to tell
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a bug answers 500, the server lives on
            log.exception("error serving %s %s", self.command, path)
            self._json(500, {"error": f"internal error: {e}"})
        finally:
            if self._sent_body() and not self._body_taken:
                # What is left of the body would be read as the next request: a request
                # hidden in a refused body must never run.
                self.close_connection = True

    def _sent_body(self) -> bool:
        return ("Transfer-Encoding" in self.headers
                or self.headers.get("Content-Length", "0").strip() not in ("", "0"))

    def _host(self) -> str:
        return self.client_address[0]

    def _request(self) -> access.Request:
        return access.Request(self._host(), self.connection.getsockname()[0], self.command,
                              urlsplit(self.path).path, self.headers)

    def _continue(self) -> None:
        """Tell an uploader that waits for it (Expect: 100-continue) to send the body."""
        expect = self.headers.get("Expect", "").lower() == "100-continue"
        if expect and self.request_version >= "HTTP/1.1":
            self.send_response_only(100)
            self.end_headers()

    def _refuse_upload(self, e: ApiError) -> None:
        """Answer a refused or failed upload, then read away what the uploader still sends
        for a moment: a socket closed with unread data is reset, and the uploader would
        lose the answer."""
        try:
            self._json(e.status, {"error": e.message}, getattr(e, "headers", None))
            self.connection.shutdown(socket.SHUT_WR)
            upload_body.drain(self.connection, upload_body.DRAIN_SECONDS)
        except OSError:
            pass  # the uploader is gone: nobody to tell

    def _body(self) -> dict:
        if "Transfer-Encoding" in self.headers:
            raise ApiError(411, "chunked request bodies are not read here: send the JSON "
                                "with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "bad Content-Length") from None
        if length > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes")
        if length < 0:
            self.close_connection = True  # where its body ends is unknown
            raise ApiError(400, "bad Content-Length")
        try:
            raw = self.rfile.read(length) if length > 0 else b"{}"
        except socket.timeout:  # the request's read budget is spent (server.TimedHandler)
            self.close_connection = True
            raise ApiError(408, "request body not received in time") from None
        self._body_taken = length <= 0 or len(raw) == length
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, f"body is not valid JSON: {e}") from None
        except RecursionError:
            raise ApiError(400, "body is not valid JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    def _json(self, status: int, obj, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, ctype: str,
              headers: Optional[Dict[str, str]] = None) -> None:
        """A whole answer; nothing the master says is cached (status, page, errors)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        """http.server's own refusals (a malformed request line, an unknown method, a
        request line too long) as JSON like every other error, not its HTML page; the
        connection ends, as the request could not be read."""
        log.debug("%s refused: %d %s", self.address_string(), code, message)
        self.close_connection = True
        text = message or self.responses.get(code, ("error",))[0]
        data = json.dumps({"error": text}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        """Every answer (http.server's own errors too) says: no content sniffing, no
        framing. 100 Continue goes through send_response_only and has neither."""
        super().send_response(code, message)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _route(path: str):
    """(method, handler name, rest of the path for a prefix route) of `path`, else
    (None, None, None)."""
    if path in ROUTES:
        method, name = ROUTES[path]
        return method, name, None
    for prefix, (method, name) in PREFIX_ROUTES.items():
        if path.startswith(prefix):
            return method, name, path[len(prefix):]
    return None, None, None
