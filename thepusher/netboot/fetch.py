"""`create-nbi --download URL`: fill the TinyCore cache from a mirror, md5-checked.

URL is a release's architecture directory, e.g. http://tinycorelinux.net/15.x/x86_64;
the kernel and initrd live under `release/distribution_files/`, extensions under `tcz/`.
Files already in the cache whose sums match are not fetched again.
"""

import logging
import os
import urllib.error
import urllib.request
from typing import List, Optional

from thepusher.netboot import tcz

log = logging.getLogger("thepusher.nbi")

TIMEOUT = 60


def _get(url: str) -> Optional[bytes]:
    """The body, or None for a 404 (an extension without a .dep file)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 - admin's mirror
            return answer.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise tcz.NbiError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise tcz.NbiError(f"{url}: cannot download ({reason})") from None


def _fetch(url: str, dest: str) -> None:
    """Download `url` (and its .md5.txt) to `dest` unless a checked copy is there.

    The body is written to a temporary
    name and renamed only after its md5 matched, so an interrupted run never leaves a
    file that a later run would trust.
    """
    if os.path.isfile(dest) and tcz.expected_md5(dest) is not None:
        try:
            tcz.check_md5(dest)
            return
        except tcz.NbiError:
            log.info("%s: cached copy is damaged, downloading it again", dest)
    body = _get(url)
    if body is None:
        raise tcz.NbiError(f"{url}: not on the mirror (HTTP 404)")
    sums = _get(url + ".md5.txt")
    if sums is None:
        raise tcz.NbiError(f"{url}.md5.txt: not on the mirror, so {url} cannot be checked")
    tmp = dest + ".part"
    with open(tmp, "wb") as f:
        f.write(body)
    with open(tmp + ".md5.txt", "wb") as f:
        f.write(sums)
    try:
        tcz.check_md5(tmp)
    except tcz.NbiError:
        os.unlink(tmp)
        os.unlink(tmp + ".md5.txt")
        raise tcz.NbiError(f"{url}: downloaded file does not match its .md5.txt "
                           f"(truncated or damaged transfer; try again or another mirror)") from None
    os.replace(tmp + ".md5.txt", dest + ".md5.txt")
    os.replace(tmp, dest)
    log.info("downloaded %s (%d bytes, md5 ok)", url, len(body))


def download(base_url: str, cache: str) -> List[str]:
    """Everything `create-nbi` needs from the mirror; returns the extensions in load order."""
    base = base_url.rstrip("/")
    os.makedirs(cache, exist_ok=True)
    for name in (tcz.KERNEL, tcz.INITRD):
        _fetch(f"{base}/release/distribution_files/{name}", os.path.join(cache, name))
    release = tcz.kernel_release(os.path.join(cache, tcz.KERNEL))
    pending = [tcz.PYTHON]
    seen = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        _fetch(f"{base}/tcz/{name}", os.path.join(cache, name))
        dep_body = _get(f"{base}/tcz/{name}.dep")
        dep_path = os.path.join(cache, name + ".dep")
        if dep_body is not None:
            with open(dep_path, "wb") as f:
                f.write(dep_body)
        elif os.path.exists(dep_path):
            os.unlink(dep_path)
        pending.extend(dep for dep, _line in tcz.read_deps(cache, name, release))
    return tcz.resolve(cache, [tcz.PYTHON], release)
