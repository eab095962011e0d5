"""`GET /api/events`: the status as server-sent events, for the page and for scripts.

One `status` event at once, then one per change, coalesced to at most one per
EVENT_INTERVAL however many clients report, and a comment line at least every
KEEPALIVE so that proxies keep the stream open. Each stream is a thread that sends the
whole status at every change, so their number is capped in all and per address
(limits.py); a refused reader gets 503 and the page polls /api/status instead.
"""

import select
import time

from thepusher.master.errors import ApiError

EVENT_INTERVAL = 0.25  # an event stream sends at most 4 status updates a second ...
KEEPALIVE = 15.0  # ... and a comment line at least this often, so proxies keep it open
RETRY_AFTER = 15  # seconds a refused reader waits before it tries again (the page: web/app.js)


def serve(handler) -> None:
    """Stream to `handler`'s peer until it goes away (or the master stops: the browser's
    EventSource then reconnects), in one of the server's event-stream places."""
    host = handler.client_address[0]
    slots = handler.server.event_streams
    refused = slots.take(host)
    if refused:
        # and the connection ends: a refused reader must not hold a thread waiting
        raise ApiError(503, f"{refused}: the page falls back to polling /api/status; "
                            f"try the stream again later",
                       {"Retry-After": str(RETRY_AFTER), "Connection": "close"})
    try:
        _stream(handler)
    finally:
        slots.release(host)


def _stream(handler) -> None:
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    server = handler.server
    state, catalog = server.state, server.catalog
    # A reader sends nothing once the stream runs: the connection turning readable means
    # it closed (or misbehaves), and its place is given back within a second.
    gone = select.poll()
    gone.register(handler.connection, select.POLLIN | select.POLLERR | select.POLLHUP)
    seen = None
    quiet_since = time.monotonic()
    try:
        handler.wfile.write(b"retry: 2000\n\n")
        while not gone.poll(0):
            # Woken by state changes; image changes (hashing done, an upload) are
            # noticed within a second.
            state.wait_update(seen[0] if seen else -1, 1.0)
            key = (state.version, catalog.generation)
            if key != seen:
                seen = key
                handler.wfile.write(b"event: status\ndata: " + server.view.snapshot()[1] + b"\n\n")
                quiet_since = time.monotonic()
                time.sleep(EVENT_INTERVAL)
            elif time.monotonic() - quiet_since >= KEEPALIVE:
                handler.wfile.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
    except OSError:
        return  # the page closed (or the socket timed out writing to a dead reader)
