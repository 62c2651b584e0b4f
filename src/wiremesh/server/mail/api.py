"""HTTP endpoints of the mail domain."""

from fastapi import APIRouter

router = APIRouter()
