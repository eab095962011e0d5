"""What the master tells a client, and the ports both sides agree on.

The master plans (config -> groups -> chains -> one start per client); the client
acts on it. This module is the contract between the two rooms, so neither imports
the other.
"""

DEFAULT_PORT = 8080  # the master's HTTP API and page
DEFAULT_DATA_PORT = 8081  # a client's data port, where its upstream connects
