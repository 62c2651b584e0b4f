"""HTTP endpoints of the auth domain."""

from fastapi import APIRouter

router = APIRouter()
