"""Stand-ins for the outside services the platform talks to, shared by tests/ and bench/.

A top-level package so that both may import it (bench/ never imports tests/); app/ and
dispatcher/ never import it.
"""
