"""Helpers the test folders share, so each exists once.

- :mod:`tests.support.waiting`: ``eventually``, polling a condition until it holds.
- :mod:`tests.support.ports`: ``free_port``.
- :mod:`tests.support.postgres`: the test PostgreSQL server and its admin connection.
- :mod:`tests.support.live`: the app served on a real socket, the ``live_server`` and ``org``
  fixtures and the enrollment calls made against them.
- :mod:`tests.support.processes`: real server, agent and HAProxy processes.
- :mod:`tests.support.deployment`: the ``processes``, ``start_deployment`` and ``deployment``
  fixtures built on them.

Fixture modules are registered once, by ``pytest_plugins`` in ``tests/conftest.py``; tests
take their fixtures by name and import only plain functions and types from here.
"""
