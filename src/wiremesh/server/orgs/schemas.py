"""Organizations and members: request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wiremesh.server.orgs.models import OrgInvitation, OrgRole
from wiremesh.server.validation import DbId, Email
from wiremesh.server.validation import OrgName as OrgName


class OrgCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: OrgName
    network_cidr: str | None = Field(
        default=None,
        max_length=43,
        description=(
            "IPv4 network of the org's devices (/8 to /30, inside the server's pool, overlapping "
            "no other org); omitted = the first free block of the pool"
        ),
        examples=["100.64.16.0/20"],
    )
    owner_user_id: DbId | None = Field(default=None, description="Make this user the owner")


class OrgUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: OrgName


class OrgOut(BaseModel):
    id: int
    name: str
    network_cidr: str
    created_at: datetime
    role: OrgRole | None = Field(
        description=(
            "Your role as a member of the organization; null when you are a server "
            "administrator who is not a member (you may still manage it as an owner would)"
        )
    )


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: DbId | None = Field(default=None, description="The user to add, or give `email`")
    email: Email | None = Field(default=None, description="The user to add, or give `user_id`")
    role: OrgRole = OrgRole.MEMBER

    @model_validator(mode="after")
    def _exactly_one_user(self) -> MemberAdd:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give exactly one of user_id and email")
        return self


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: OrgRole


class MemberOut(BaseModel):
    user_id: int
    email: str
    name: str
    role: OrgRole
    joined_at: datetime


class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    role: OrgRole = OrgRole.MEMBER
    expires_in_days: int = Field(default=7, ge=1, le=90)


class InvitationOut(BaseModel):
    id: int
    org_id: int
    email: str
    role: OrgRole
    created_at: datetime
    expires_at: datetime
    mail_id: int | None = None

    @classmethod
    def of(cls, row: OrgInvitation, mail_id: int | None = None) -> InvitationOut:
        return cls(
            id=row.id,
            org_id=row.org_id,
            email=row.email,
            role=OrgRole(row.role),
            created_at=row.created_at,
            expires_at=row.expires_at,
            mail_id=mail_id,
        )


class InvitationAcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256)


class InvitationAcceptOut(BaseModel):
    org_id: int
    role: OrgRole
    membership_id: int
