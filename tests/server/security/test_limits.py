"""Size limits before parsing and before authentication (issue #12: a 10 MB body of 900,000
keys sent to ``POST /api/v1/enroll`` without a token took 8 s and answered 116 MB)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wiremesh.cli import server as server_cli
from wiremesh.server.config import Settings


def _many_keys(size: int) -> bytes:
    """A JSON object of short unknown keys, about ``size`` bytes long."""
    count = size // 15  # each entry is `"k0000000": 0, `
    return json.dumps({f"k{index:07d}": 0 for index in range(count)}).encode()


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text[:500]
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


async def test_a_large_body_is_refused_quickly_with_a_small_answer(
    client: httpx.AsyncClient,
) -> None:
    body = _many_keys(10 * 1024 * 1024)  # ~900,000 keys, as in the report
    response = await client.post(
        "/api/v1/enroll", content=body, headers={"content-type": "application/json"}
    )
    # 413, not 422: refused before the body was parsed (or authenticated)
    _assert_error(response, 413, "payload_too_large")
    assert len(response.content) < 1024


async def test_a_streamed_body_without_length_is_counted_too(client: httpx.AsyncClient) -> None:
    chunk = b" " * 65536

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"setup_key": "x", "hostname": "h", "pad": "'
        for _ in range(40):  # 2.5 MiB, never declared
            yield chunk
        yield b'"}'

    response = await client.post(
        "/api/v1/enroll", content=stream(), headers={"content-type": "application/json"}
    )
    _assert_error(response, 413, "payload_too_large")


async def test_many_extra_keys_under_the_limit_give_a_bounded_validation_error(
    client: httpx.AsyncClient,
) -> None:
    body = _many_keys(1000 * 1024)  # ~85,000 keys, just under the 1 MiB limit
    response = await client.post(
        "/api/v1/enroll", content=body, headers={"content-type": "application/json"}
    )
    error = _assert_error(response, 422, "validation_error")
    assert len(response.content) < 8 * 1024
    details = error["details"]
    assert isinstance(details, list)
    assert len(details) == 20
    assert isinstance(error["message"], str)
    assert len(error["message"]) < 600
    assert "problems in all" in error["message"]


async def test_a_long_unknown_key_is_not_echoed_whole(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/enroll", json={"k" * 100_000: 1})
    error = _assert_error(response, 422, "validation_error")
    assert len(response.content) < 4 * 1024
    assert isinstance(error["message"], str)


async def test_the_body_limit_is_a_setting(tmp_path: Path) -> None:
    from wiremesh.server.app import create_app

    app = create_app(Settings(data_dir=tmp_path, max_body_bytes=2048), migrate_on_start=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wiremesh.test") as client:
        response = await client.post("/api/v1/enroll", json={"pad": "x" * 4096})
    _assert_error(response, 413, "payload_too_large")
    assert "2048" in str(response.json()["error"]["message"])


@pytest.mark.parametrize("limit", [4096, 16 * 1024])
def test_the_server_bounds_request_headers(limit: int, tmp_path: Path) -> None:
    """httptools reads headers of any size into memory; h11 stops at the configured size."""
    settings = Settings(data_dir=tmp_path, max_header_bytes=limit)
    config = server_cli.uvicorn_config(settings, "127.0.0.1", 8080)
    assert config.http == "h11"
    assert config.h11_max_incomplete_event_size == limit
