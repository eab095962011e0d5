# thepusher: `make` builds the zipapp, `make test` runs every test under python3 and
# Python 3.9 (TinyCore's floor), `make demo` shows a whole round on this machine.

PYTHON  ?= python3
PY39    ?= $(shell ls -d "$$(pyenv root 2>/dev/null)"/versions/3.9*/bin/python3 2>/dev/null | head -n1)
VENV    := .venv
VENV39  := .venv39
SOURCES := thepusher.py $(shell find thepusher -name '*.py' -o -name '*.html' -o -name '*.css' -o -name '*.js') \
           $(wildcard tinycore/*)
PYTEST_ARGS ?=
BENCH_LINK_ARGS ?=
# make nbi: TinyCore files in TINYCORE (or fetched from TC_MIRROR), boot files out in NBI_OUT.
TINYCORE  ?= build/tinycore
NBI_OUT   ?= build/nbi
MASTER    ?=
TC_MIRROR ?=
# Debian packages the tests drive for real: cpio (cross-checks our archives), the ISO and
# PXE tools, iPXE's binaries (create-nbi copies them), GRUB's EFI modules and mtools (the
# ISO's UEFI boot image), dnsmasq (checks the generated configs and answers DHCP in a
# namespace), chromium (the status page's browser test), gdisk, fdisk and e2fsprogs
# (sgdisk, sfdisk, mkfs.ext4: real partition tables and filesystems for the disk fix-up
# and personalize tests), dosfstools, mtools and ntfs-3g (mkfs.vfat, mkfs.ntfs, ntfscp:
# real FAT and NTFS for the used-block map tests), openssh-client (ssh-keygen), bmap-tools
# (bmaptool: reads the .bmap files we write, writes ones we read).
TEST_DEBS := cpio xorriso isolinux syslinux-common pxelinux ipxe grub-efi-amd64-bin mtools dnsmasq-base \
  chromium bzip2 xz-utils gzip tar iproute2 gdisk fdisk e2fsprogs dosfstools ntfs-3g openssh-client \
  bmap-tools

# What `make bench` drives besides those: partclone (bench_capture.py's comparison) and
# udpcast (udp-sender/udp-receiver: link.py --mode udpcast, the multicast comparison).
BENCH_DEBS := partclone gdisk e2fsprogs dosfstools mtools ntfs-3g udpcast

.PHONY: all test test-long lint smoke demo bench bench-link bench-room bench-debs nbi test-debs clean e2e

all: thepusher.pyz

# Stored uncompressed (zipapp's default) so it loads on a Python without zlib.
thepusher.pyz: $(SOURCES)
	rm -rf build/pyz && mkdir -p build/pyz
	cp -rL thepusher build/pyz/
	cp thepusher/__main__.py build/pyz/__main__.py
	find build/pyz -name '__pycache__' -prune -exec rm -rf {} +
	$(PYTHON) -m zipapp build/pyz -p '/usr/bin/env python3' -o $@
	@echo "built $@ ($$(stat -c %s $@) bytes)"

$(VENV)/.done: tests/requirements.txt
	@echo "make: creating $(VENV) with the test tools (pytest, hypothesis, ruff, vermin) from PyPI"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

$(VENV39)/.done: tests/requirements.txt
	@test -n "$(PY39)" || { echo "Python 3.9 not found (pyenv install 3.9.18, or make PY39=/path/to/python3.9)"; exit 1; }
	@echo "make: creating $(VENV39) ($(PY39)) with the same tools"
	$(PY39) -m venv $(VENV39)
	$(VENV39)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

lint: $(VENV)/.done
	$(VENV)/bin/ruff check thepusher tests thepusher.py
	$(VENV)/bin/vermin --no-tips --violations --target=3.9- --eval-annotations thepusher thepusher.py

# The whole suite under both Pythons, each on two pytest-xdist workers: most tests wait on
# processes, sockets and timeouts rather than compute, so two at once take ~60% of the
# time on 2 cores (the tests share no ports, files or names: each has its own lab). Under
# 3.9 (the floor) the randomized chain fault runs are the first 3 of the same 12 plans;
# both run one whole-system fault plan of each kind (tests/system/test_round_faults.py);
# `make test-long` runs many more of both. `make test PYTEST_ARGS=-n0` runs them one by
# one. Each run lists its 15 slowest tests at its end: where to look first when CI nears
# its 15 minutes.
test: thepusher.pyz $(VENV)/.done $(VENV39)/.done test-debs lint smoke
	$(VENV)/bin/python -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS) tests
	THEPUSHER_FAULT_RUNS=3 $(VENV39)/bin/python -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS) tests

# The randomized fault tests at length: 200 chain plans, 120 whole-system plans (~25 min).
test-long: thepusher.pyz $(VENV)/.done test-debs
	THEPUSHER_FAULT_RUNS=200 THEPUSHER_ROUND_FAULTS=120 $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS) \
	  tests/system/test_faults.py tests/system/test_round_faults.py

# The zipapp itself on every other Python 3.9-3.13 this machine has: one small demo round each.
smoke: thepusher.pyz
	@for py in $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.1[0-3]*/bin/python3 2>/dev/null); do \
	  echo "smoke: $$($$py --version) runs thepusher.pyz demo"; \
	  $$py thepusher.pyz demo --clients 2 --size 16M --port 0 >build/smoke.log 2>&1 \
	    || { cat build/smoke.log; exit 1; }; \
	done

test-debs:
	@missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make: installing Debian packages for the tests (apt, a few minutes):" $$missing; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

nbi: thepusher.pyz
	$(PYTHON) thepusher.pyz create-nbi --tinycore $(TINYCORE) --out $(NBI_OUT) \
	  $(if $(MASTER),-p $(MASTER)) $(if $(TC_MIRROR),--download $(TC_MIRROR))

# Real VMs (QEMU) on a private bridge: 3 imaged through the chain, 1 PXE-booted put-image.
# Needs root and Debian 12; installs its packages and downloads a kernel (docs/e2e.md).
# `make test` skips tests/e2e: they are collected only when named, as here.
e2e: thepusher.pyz $(VENV)/.done
	tests/e2e/setup.sh build/e2e/debs
	$(VENV)/bin/python -m pytest -q -s $(PYTEST_ARGS) tests/e2e

# make demo DEMO_ARGS=--keep keeps the master and its page up until Ctrl-C.
DEMO_ARGS ?=
demo: thepusher.pyz
	$(PYTHON) thepusher.pyz demo --clients 3 --size 256M $(DEMO_ARGS)

bench: thepusher.pyz bench-debs
	$(PYTHON) tests/bench/bench.py
	$(PYTHON) tests/bench/bench_master.py
	$(PYTHON) tests/bench/bench_verify.py
	$(PYTHON) tests/bench/bench_capture.py
	$(PYTHON) tests/bench/bench_disk.py
	$(PYTHON) tests/bench/bench_disk.py --rate 300M
	$(PYTHON) tests/bench/link.py
	$(PYTHON) tests/bench/link.py --mode chains
	$(PYTHON) tests/bench/link.py --mode udpcast

# Installs what is missing; says so, and goes on, when apt cannot (bench_capture.py then
# reports the partclone comparison as not measured; link.py --mode udpcast stops, saying
# that udp-sender is missing).
bench-debs:
	@missing=$$(for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make: installing Debian packages for the benchmarks (apt):" $$missing; \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null; } \
	    || echo "make: could not install $$missing: the benchmarks that need them say so"; \
	fi

# The chain over emulated 1 Gbit/s links: a network namespace per machine (root, Linux).
bench-link: thepusher.pyz
	$(PYTHON) tests/bench/link.py $(BENCH_LINK_ARGS)

# A room of 200 clients behind slow links, 5 % of them killed (~35 min; not in `make bench`).
BENCH_ROOM_ARGS ?=
bench-room: thepusher.pyz
	$(PYTHON) tests/bench/link.py --mode room $(BENCH_ROOM_ARGS)

clean:
	rm -rf build thepusher.pyz $(VENV) $(VENV39) .pytest_cache tests/artifacts
	find . -name '__pycache__' -prune -exec rm -rf {} +
