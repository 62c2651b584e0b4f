"""What the agent (and a relay) trusts when it reaches the server over TLS: the system's CA
certificates, or only a private CA given with ``--ca-file`` / ``WIREMESH_AGENT_CA_FILE``.

``ssl`` is imported where a context is made, so an agent on a plain ws:// server, or on
the system's CAs (which websockets loads itself for wss://), makes no context at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import ssl

__all__ = ["CA_FILE_ENV", "UnusableCAFile", "tls_context"]

CA_FILE_ENV: Final = "WIREMESH_AGENT_CA_FILE"
"""Where ``--ca-file`` is read from when not given: a private CA's certificate (PEM)."""


class UnusableCAFile(Exception):
    """The private CA file cannot be read or holds no certificate."""


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The system's CAs, or, with ``ca_file``, only that private CA. Certificates and host
    names are always verified."""
    import ssl

    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UnusableCAFile(f"cannot use the CA file {ca_file}: {exc}") from None
