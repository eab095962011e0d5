"""A FIFO as the input of a process under test (put-image, compress): the test writes it."""

import os
import time
from pathlib import Path


def open_fifo_writer(path: Path, timeout: float = 20.0) -> int:
    """The write end of a FIFO, once its reader (the uploader) has opened it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            if time.monotonic() > deadline:
                raise AssertionError(f"nobody opened {path} for reading")
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd
