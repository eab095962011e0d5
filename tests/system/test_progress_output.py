"""What people see, shown by real master, client and put-image processes in their logs:
the master's periodic round summary, the DONE/ERROR banner, put-image's final progress
line (rendered as pure functions in tests/unit/test_progress.py)."""

import subprocess

from tests.conftest import ENV, thepusher, write_config, write_image

MiB = 1 << 20
A, F = "127.0.0.11", "127.0.0.12"


def banner_text(out: str) -> str:
    """The words under the big letters of the banner in a client's output."""
    rule = "=" * 79
    start = out.index(rule)
    rows = out[start:out.index(rule, start + 1)].splitlines()
    return " ".join(row.strip() for row in rows if row.startswith("   ") and "##" not in row)


def test_round_shows_summaries_on_the_master_and_the_done_banner_on_the_client(lab):
    """Host F registers and says ready but takes its start only once the master has
    logged a periodic summary of the round (so the round lasts long enough for one,
    whatever the machine's speed); it never listens, so A skips it and F ends ERROR."""
    write_image(lab.images / "disk.img", 4 * MiB)
    write_config(lab.images, [A, F], settings="arm_timeout = 120\n")
    master = lab.start_master()
    assert lab.call("POST", "/api/register", {"data_port": 9}, source=F)[0] == 200
    assert lab.call("POST", "/api/ready", {}, source=F)[0] == 200
    client = lab.start_client(A)
    lab.wait_for(lambda: "round 1 (group room): arming for" in master.output(), 60,
                 "a periodic summary of round 1")
    session = lab.round()["session"]
    assert lab.call("POST", "/api/report", {"session": session, "state": "BUSY"}, source=F)[0] == 200
    assert client.wait(60) == 0, lab.dump()
    lab.wait_for(lambda: "round 1: group room finished" in master.output(), 30, "round 1 summary")

    log = master.output()
    summary = next(line for line in log.splitlines() if "round 1 (group room): arming" in line)
    assert "INFO" in summary and summary.endswith("1 WAIT, 1 BUSY, 0 DONE, 0 ERROR"), summary
    assert "slowest disk 0 B of 4.0 MiB (0%)" in summary
    assert f"1 of 2 DONE ({A}); ERROR: {F} (skipped by {A}" in log
    report_lines = [line for line in log.splitlines() if "/api/report" in line]
    assert all("DEBUG" in line for line in report_lines)  # requests log at DEBUG only

    out = client.output()
    digest = lab.status()["images"][0]["sha256"]
    dest = lab.disks / f"{A}.img"
    assert out.count("=" * 79) == 2
    assert out.index("=" * 79) > out.index(f"skipped next hop {F}")
    text = banner_text(out)
    assert f"DONE: image img written to {dest} and verified sha256 {digest} 4.0 MiB in " in text
    assert 'client 1/2 of room "room", round 1' in text


def test_failed_client_shows_the_error_banner_with_the_reason(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    dest = lab.disks / "missing" / "a.img"
    client = lab.start_client(A, str(dest))
    assert client.wait(60) == 1, lab.dump()
    out = client.output()
    assert "   ##########    ########" in out  # the big E and R
    text = banner_text(out)
    assert f"ERROR: cannot open destination {dest}: its directory does not exist" in text
    assert f'image img was not written to {dest} (0 B in ' in text
    assert 'client 1/1 of room "room", round 1' in text


def test_put_image_without_a_terminal_logs_its_final_progress_line(lab):
    write_image(lab.images / "disk.img", MiB)
    write_config(lab.images, [A])
    lab.start_master()
    src = lab.root / "upload.img"
    src.write_bytes(b"x" * (3 * MiB))
    result = subprocess.run(thepusher("put-image", "-i", str(src), "-p", f"127.0.0.1:{lab.port}"),
                            env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"put-image {src}: 3.0 MiB of 3.0 MiB (100.0%), " in result.stderr
    assert " MB/s, in " in result.stderr
    assert "\r" not in result.stderr
