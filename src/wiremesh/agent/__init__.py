"""The wiremesh agent: enrollment, the session loop and WireGuard configuration.

It talks to the server only through HTTP and :mod:`wiremesh.protocol`; it never imports
:mod:`wiremesh.server`.
"""
