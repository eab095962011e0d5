"""A real client from before FREE records (`git archive` of that commit), for the tests
that an old client refuses a version 2 stream at its header (test_free_runs*.py); given
to tests/system by its conftest."""

import subprocess
import sys
from pathlib import Path

import pytest

OLD = "90fb595"  # main before FREE records: a client of protocol version 1 only
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def old_client(tmp_path):
    """The command that runs the old client."""
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", OLD + "^{commit}"],
                      capture_output=True).returncode:
        pytest.skip(f"commit {OLD} is not in this clone")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD, "thepusher", "thepusher.py"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return [sys.executable, str(old / "thepusher.py")]
