"""What people see: the progress line (client and put-image), the DONE/ERROR banner,
and the master's periodic round summary. Rendering is tested as pure functions on a fake
clock; real master, client and put-image processes show them in their logs in
tests/system/test_progress_output.py."""

import io
import logging

import pytest

from thepusher import console
from thepusher.master import rounds
from thepusher.master.state import Client, Round
from thepusher.console import ProgressLine, banner, plain, render
from thepusher.units import duration, eta

MiB = 1 << 20
GiB = 1 << 30
LABEL = 'client 2/5 of room "lab1"'


# -- the line, as text --------------------------------------------------------------


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.4, "0s"), (42, "42s"), (59.6, "1m00s"), (72, "1m12s"), (3599, "59m59s"),
    (3600 + 5 * 60, "1h05m"), (99 * 3600 + 59 * 60, "99h59m"), (400000, ">99h"), (-3, "0s"),
])
def test_durations_are_short_and_exact_to_the_unit_shown(seconds, text):
    assert duration(seconds) == text


def test_eta_is_the_time_left_at_the_rate_and_unknown_without_rate_or_total():
    assert eta(2 * GiB, 8 * GiB, 112e6) == duration(6 * GiB / 112e6) == "58s"
    assert eta(0, 8 * GiB, 0.0) == "--"
    assert eta(5 * GiB, None, 112e6) == "--"
    assert eta(8 * GiB, 8 * GiB, 0.0) == "0s"


def test_line_shows_label_bar_percent_bytes_rate_and_eta_in_79_columns():
    line = render(LABEL, int(2.1 * GiB), 8 * GiB, 112e6)
    assert line == 'client 2/5 of room "lab1" [##.........]  26.2% 2.1/8.0 GiB  112 MB/s ETA 57s'
    assert len(line) <= 79


@pytest.mark.parametrize("label", ["c", LABEL, "client 123/500 of room \"a-very-long-room-name-x\"",
                                   "put-image /dev/disk/by-id/ata-SAMSUNG_SSD_860_EVO_500GB_S3Z2N"])
@pytest.mark.parametrize("total", [1000, 256 * MiB, 8 * GiB, 466 * GiB, 3 << 40])
def test_line_never_exceeds_the_width_and_its_bar_keeps_its_length(label, total):
    for width in (79, 59):
        lines = [render(label, done, total, rate, width)
                 for done, rate in [(0, 0.0), (total // 3, 4.5e6), (total // 2, 112e6),
                                    (total, 1250e6)]]
        for line in lines:
            assert len(line) <= width, line
            assert line.isascii()
        bars = {line.index("]") - line.index("[") for line in lines}
        assert len(bars) == 1, lines
        assert lines[0].count("#") == 0 and "." in lines[0]
        assert "[" + "#" * (bars.pop() - 1) + "]" in lines[-1]
        assert lines[-1].split("]")[1].split()[0] == "100.0%"
    if len(label) <= 30:
        assert render(label, 0, total, 0.0).startswith(label + " [")


def test_final_line_says_how_long_it_took_instead_of_eta():
    line = render(LABEL, 8 * GiB, 8 * GiB, 110e6, elapsed=78)
    assert line.endswith("100.0% 8.0/8.0 GiB  110 MB/s in 1m18s")
    assert "ETA" not in line


def test_unknown_total_shows_bytes_and_rate_only():
    line = render("put-image -", 1536 * MiB, None, 45e6)
    assert line == "put-image - 1.5 GiB 45 MB/s"
    assert "%" not in line and "ETA" not in line and "[" not in line
    assert plain("put-image -", 1536 * MiB, None, 4.5e6) == "put-image -: 1.5 GiB, 4.5 MB/s"


def test_note_is_shown_only_where_it_fits():
    line = render("put-image x", MiB, 8 * MiB, 1e6, note="sent 0.5 MiB gz")
    assert line.endswith(" 12.5% 1/8 MiB  1.0 MB/s ETA 7s     sent 0.5 MiB gz")
    long_label = "put-image /dev/disk/by-id/ata-SAMSUNG_SSD_860_EVO_500GB_S3Z2NB0K123456X"
    assert "sent" not in render(long_label, MiB, 8 * MiB, 1e6, note="sent 0.5 MiB gz")
    assert plain(long_label, MiB, 8 * MiB, 1e6, note="sent 0.5 MiB gz").endswith(
        ", ETA 7s, sent 0.5 MiB gz")


def test_plain_line_for_logs():
    assert plain(LABEL, int(2.1 * GiB), 8 * GiB, 112e6) == (
        'client 2/5 of room "lab1": 2.1 GiB of 8.0 GiB (26.2%), 112 MB/s, ETA 57s')
    assert plain(LABEL, 8 * GiB, 8 * GiB, 112e6, elapsed=77) == (
        'client 2/5 of room "lab1": 8.0 GiB of 8.0 GiB (100.0%), 112 MB/s, in 1m17s')


# -- the banner ---------------------------------------------------------------------


def test_done_banner_is_big_boxed_ascii_with_the_facts_below():
    digest = "9f2c" * 16
    text = banner("DONE", ["image img written to /dev/sda and verified", f"sha256 {digest}"])
    rows = text.splitlines()
    assert rows[1] == rows[-2] == "=" * 79
    assert all(len(row) <= 79 and row.isascii() for row in rows)
    big = [row for row in rows if "##" in row]
    assert len(big) == 5 and big[0].startswith("   ########")
    assert "   DONE: image img written to /dev/sda and verified" in rows
    assert f"   sha256 {digest}" in rows


def test_error_banner_wraps_a_long_reason_without_losing_a_word():
    reason = ("cannot open destination /dev/shm/thepusher-test-abc/disks/missing/b.img: "
              "its directory does not exist " * 2).strip()
    text = banner("ERROR", [reason])
    rows = text.splitlines()
    assert all(len(row) <= 79 for row in rows)
    assert len([row for row in rows if "##" in row]) == 5
    words = " ".join(row.strip() for row in rows if row.startswith("   ") and "##" not in row)
    assert words == f"ERROR: {reason}"


def test_a_word_without_big_letters_stays_readable():
    assert "   HELLO: x" in banner("HELLO", ["x"]).splitlines()
    assert "   HELLO" in banner("HELLO", ["x"]).splitlines()


# -- the line, live -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def records():
    logger = logging.getLogger("thepusher.test-progress")
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, handler.lines
    logger.removeHandler(handler)


def test_without_a_terminal_a_plain_line_every_log_every_seconds_and_the_final_one(records):
    logger, lines = records
    clock = Clock()
    stream = io.StringIO()
    line = ProgressLine("put-image x", 100 * MiB, logger, stream=stream, tty=False, clock=clock)
    for i in range(1, 201):  # 20 s of updates every 0.1 s at 5 MiB/s
        clock.now = 1000.0 + i / 10
        line.update(i * MiB // 2)
    line.close()
    assert stream.getvalue() == ""
    assert len(lines) == 20 / console.LOG_EVERY + 1
    assert lines[0] == "put-image x: 25.0 MiB of 100.0 MiB (25.0%), 5.2 MB/s, ETA 15s"
    assert lines[-1] == "put-image x: 100.0 MiB of 100.0 MiB (100.0%), 5.2 MB/s, in 20s"


def test_time_waiting_for_the_first_byte_counts_in_neither_rate_nor_duration(records):
    logger, lines = records
    clock = Clock()
    line = ProgressLine("x", 100 * MiB, logger, stream=io.StringIO(), tty=False, clock=clock)
    for i in range(1, 101):  # 10 s waiting for the upstream hop, then 10 MiB/s for 10 s
        clock.now = 1000.0 + i / 10
        line.update(0)
    for i in range(1, 101):
        clock.now = 1010.0 + i / 10
        line.update(i * MiB)
    assert lines[-1] == "x: 100.0 MiB of 100.0 MiB (100.0%), 10 MB/s, ETA 0s"
    line.close()
    assert lines[-1] == "x: 100.0 MiB of 100.0 MiB (100.0%), 10 MB/s, in 10s"
    assert line.elapsed() == 10.0


def test_on_a_terminal_the_line_is_redrawn_at_most_4_times_a_second(records):
    logger, lines = records
    clock = Clock()
    stream = io.StringIO()
    line = ProgressLine(LABEL, 100 * MiB, logger, stream=stream, tty=True, clock=clock)
    for i in range(1, 101):  # 10 s of updates every 0.1 s
        clock.now = 1000.0 + i / 10
        line.update(i * MiB)
    line.close(100 * MiB)
    out = stream.getvalue()
    draws = out.split("\r")[1:]
    assert 10 * 3 <= len(draws) <= 10 / console.DRAW_EVERY + 2
    assert all(len(d.rstrip("\n")) <= 79 for d in draws)
    assert out.endswith("100.0% 100/100 MiB   10 MB/s in 10s\n")
    assert lines == []  # nothing goes to the log on a terminal


def test_log_lines_erase_the_line_and_it_is_drawn_again_below(records):
    logger, _ = records
    clock = Clock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        line = ProgressLine(LABEL, 100 * MiB, logger, stream=stream, tty=True, clock=clock)
        clock.now += 1
        line.update(10 * MiB)
        drawn = stream.getvalue()
        logging.getLogger("thepusher.test-console.other").warning("skipping hop 10.0.0.7")
        after = stream.getvalue()[len(drawn):]
        shown = drawn.lstrip("\r")
        assert after == "\r" + " " * len(shown) + "\r" + "WARNING skipping hop 10.0.0.7\n" \
            + "\r" + shown
        line.close()
        assert handler.stream is stream  # given back
        logging.getLogger("thepusher.test-console.other").warning("after")
        assert stream.getvalue().endswith("\nWARNING after\n")
    finally:
        root.removeHandler(handler)


# -- the master's summary -------------------------------------------------------------


class Sent:
    def __init__(self, sent: int) -> None:
        self.sent = sent


def test_round_summary_names_phase_slowest_disk_rate_eta_and_counts():
    r = Round(number=3, group="lab1", image="img", session="s", secret=b"",
              chains=[["a", "b", "c", "d"]], phase="streaming", started=5000.0)
    r.sources = [Sent(int(2.3 * GiB))]
    clients = [
        Client("a", state="DONE", bytes_done=8 * GiB, bytes_total=8 * GiB),
        Client("b", state="BUSY", bytes_done=3 * GiB, bytes_total=8 * GiB, rate=120e6),
        Client("c", state="BUSY", bytes_done=int(2.1 * GiB), bytes_total=8 * GiB, rate=112e6),
        Client("d", state="ERROR", error="skipped"),
    ]
    assert rounds.progress(r, clients, 5065.0) == (
        "round 3 (group lab1): streaming for 1m05s; slowest disk 2.1 GiB of 8.0 GiB (26%), "
        "112 MB/s, ETA 57s; master sent 2.3 GiB; 2 BUSY, 1 DONE, 1 ERROR")
    r.sources = [Sent(int(2.3 * GiB)), Sent(int(1.5 * GiB))]
    assert "; master sent 2.3 GiB / 1.5 GiB; " in rounds.progress(r, clients, 5065.0)
    r.phase, r.sources = "arming", []
    clients = [Client("a", state="WAIT"), Client("b", state="BUSY", bytes_total=8 * GiB)]
    assert rounds.progress(r, clients, 5010.0) == (
        "round 3 (group lab1): arming for 10s; slowest disk 0 B of 8.0 GiB (0%), 0.0 MB/s, "
        "ETA --; 1 WAIT, 1 BUSY, 0 DONE, 0 ERROR")
