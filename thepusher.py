#!/usr/bin/env python3
"""Run thepusher from a source checkout: `python3 thepusher.py --help`."""

import sys

from thepusher.cli import main

if __name__ == "__main__":
    sys.exit(main())
