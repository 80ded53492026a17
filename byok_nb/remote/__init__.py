"""A session whose calls run in the team's byok_nb service: :func:`byok_nb.connect` (client.py),
the service's registry API (server.py) and the JSON both speak (codec.py, errors.py).

Nothing is imported here: ``import byok_nb`` stays light, and the client does not load the
server's modules.
"""
