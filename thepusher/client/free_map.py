"""A compressed image's free map, for this client's writer: its stream cannot carry it
(record offsets are offsets of the compressed bytes, the map names decoded ones), so
the client fetches it from the master (GET /api/free-map) before its round streams.

The map is believed only if it is the one the master's start states: its digest and
its size. The start is what the client acts on anyway (signed, with the config's
`secret`), so whoever serves the map, nobody but the master holding the round can
change it; and at the end the writer checks what it skipped against the same two.
"""

import logging
import time
from typing import List, Optional, Tuple

from thepusher.client.master_link import MasterLink, MasterRefused, MasterUnreachable
from thepusher.image import freemap
from thepusher.image.formats import NONE
from thepusher.plan import Start

log = logging.getLogger("thepusher.client")

ATTEMPTS = 3  # a master that answered the start a moment ago: a few tries suffice


class FreeMapRefused(Exception):
    """There is no free map this client may use; the message says why."""


def for_start(link: MasterLink, start: Start) -> Tuple[Optional[List[freemap.Run]], str]:
    """What the hop is told (HopConfig.free_runs, free_map_error): the start's free map
    when its stream cannot carry it, else None; None and the reason when it could not
    be had (the hop then writes nothing, and forwards)."""
    if start.compression == NONE or not start.free_map_sha256:
        return None, ""
    try:
        return fetch(link, start), ""
    except FreeMapRefused as e:
        log.error("%s: this client writes nothing and forwards the stream", e)
        return None, str(e)


def fetch(link: MasterLink, start: Start) -> List[freemap.Run]:
    """The free map the start states, from the master; FreeMapRefused says why not."""
    delay, attempt = 1.0, 1
    while True:
        try:
            return check(link.fetch_free_map(start.session, start.secret,
                                             freemap.MAX_MAP_RUNS * freemap.RUN_SIZE,
                                             start.io_timeout), start)
        except MasterUnreachable as e:
            if attempt == ATTEMPTS:
                raise FreeMapRefused(f"cannot fetch the free map: {e}") from None
            log.warning("cannot fetch the free map (%s); retrying in %.0f s", e, delay)
            time.sleep(delay)
            delay, attempt = 2 * delay, attempt + 1
        except MasterRefused as e:
            raise FreeMapRefused(str(e)) from None


def check(data: bytes, start: Start) -> List[freemap.Run]:
    """The runs of `data` if they are the start's free map."""
    try:
        runs = freemap.decode(data)
    except ValueError as e:
        raise FreeMapRefused(f"the master's free map is malformed: {e}") from None
    got = (freemap.digest(runs), sum(length for _, length in runs))
    if got != (start.free_map_sha256, start.free_bytes):
        raise FreeMapRefused(
            f"free map refused: it leaves {got[1]} bytes free (map {got[0] or 'none'}), the "
            f"start says {start.free_bytes} (map {start.free_map_sha256}): not the master's map")
    return runs
