"""HTTP endpoints of the presence domain."""

from fastapi import APIRouter

router = APIRouter()
