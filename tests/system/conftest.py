"""Fixtures the create-nbi tests share (test_nbi*.py): a TinyCore cache and a zipapp."""

from tests.support.tinycore_cache import cache, pyz  # noqa: F401  (fixtures)
