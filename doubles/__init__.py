"""Stand-ins and protocol clients shared by tests/ and bench/: a local Web Push service
(push_service), Socket.IO clients that record and follow the streams (socket_clients).

A top-level package so that both may import it (bench/ never imports tests/); app/ and
dispatcher/ never import it.
"""
