"""thepusher: stream one disk image along a chain of machines, verified end to end."""

__version__ = "0.1.0"
