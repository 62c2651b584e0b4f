"""HTTP endpoints of the users domain."""

from fastapi import APIRouter

router = APIRouter()
