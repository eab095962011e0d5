"""End-to-end tests with real VMs (make e2e); a package so that its conftest does not
shadow tests/conftest.py, which some tests import as plain `conftest`."""
