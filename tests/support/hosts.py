"""The clients' addresses in the tests: 127.0.0.11, .12, ... (all of 127/8 is loopback)."""


def hosts(n):
    return [f"127.0.0.{11 + i}" for i in range(n)]
