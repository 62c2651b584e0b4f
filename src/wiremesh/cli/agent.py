"""`wiremesh agent ...`: enroll this machine and keep it connected to the mesh.

The commands live in :mod:`wiremesh.agent.cli`, so that ``python -m wiremesh.agent`` can
run them without loading the server (whose modules every ``wiremesh`` command imports).
"""

from wiremesh.agent.cli import app

__all__ = ["app"]
