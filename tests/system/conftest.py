"""Fixtures the system tests share: a TinyCore cache and a zipapp (test_nbi*.py), a client
from before FREE records (test_free_runs*.py)."""

from tests.support.old_client import old_client  # noqa: F401  (fixture)
from tests.support.tinycore_cache import cache, pyz  # noqa: F401  (fixtures)
