"""Imports every model so that ``Base.metadata`` is complete (Alembic and tests use it)."""

from wiremesh.server.alerts.models import DeviceAlertState, OrgAlertSettings
from wiremesh.server.auth.models import ApiToken, SignInLink, WebSession
from wiremesh.server.db.base import Base
from wiremesh.server.devices.models import SetupKey, VirtualIPMapping
from wiremesh.server.events.models import MeshEvent
from wiremesh.server.mail.models import MailOutbox, SMTPSettings
from wiremesh.server.orgs.models import Membership, Organization, OrgInvitation
from wiremesh.server.paths.models import DeviceCandidates, PeerPath, Relay
from wiremesh.server.presence.models import ConnectionStatus, ServerReplica
from wiremesh.server.users.models import User

__all__ = [
    "ApiToken",
    "Base",
    "ConnectionStatus",
    "DeviceAlertState",
    "DeviceCandidates",
    "MailOutbox",
    "Membership",
    "MeshEvent",
    "OrgAlertSettings",
    "OrgInvitation",
    "Organization",
    "PeerPath",
    "Relay",
    "SMTPSettings",
    "ServerReplica",
    "SetupKey",
    "SignInLink",
    "User",
    "VirtualIPMapping",
    "WebSession",
]
