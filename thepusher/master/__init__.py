"""The master: knows the config and the images, coordinates rounds, streams to the first hop.

state.py (what is known; history.py keeps the rounds on disk) <- control.py (client
and people's calls; policy.py says when a round starts) -> rounds.py (one round's life,
using stream.py to send) ; api.py maps HTTP onto them ; server.py wires it all up.
"""
