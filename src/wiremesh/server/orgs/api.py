"""HTTP endpoints of the orgs domain."""

from fastapi import APIRouter

router = APIRouter()
