"""The master: knows the config and the images, coordinates rounds, streams to the first hop.

state.py (what is known; history.py keeps the rounds on disk) <- control.py (client
and people's calls; policy.py says when a round starts; reports.py judges what clients
report) -> rounds.py (one round's life, using source.py to send; it gets the state and
the catalog, never the controller) ; api.py maps HTTP onto them (access.py: who may;
errors.py: how a bad call is answered) ; uploads.py stores images people put
(upload_body.py reads the request body) ; server.py wires it all up. What a client is
told (its task, its start) is ../plan.py, shared with the client.
"""
