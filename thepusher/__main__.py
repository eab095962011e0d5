"""Entry point for `python3 -m thepusher` and for the zipapp (`python3 thepusher.pyz`)."""

import sys

from thepusher.cli import main

sys.exit(main())
