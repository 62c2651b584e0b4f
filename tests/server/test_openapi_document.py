"""The OpenAPI document: the right security scheme per route, and the one error shape."""

from __future__ import annotations

from typing import Any

import pytest

from wiremesh.server.app import create_app
from wiremesh.server.config import Settings

ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("openapi"), secret_keys=[])
    schema: dict[str, Any] = create_app(settings, migrate_on_start=False).openapi()
    return schema


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _schemes(operation: dict[str, Any]) -> set[str]:
    return {name for requirement in operation.get("security", []) for name in requirement}


def test_each_credential_has_its_scheme(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"ApiToken", "DeviceCredential", "RelayToken"}
    assert all(scheme["scheme"] == "bearer" for scheme in schemes.values())
    expected = {
        ("GET", "/healthz"): set(),
        ("GET", "/readyz"): set(),
        ("POST", "/api/v1/enroll"): set(),
        ("POST", "/api/v1/relay/sync"): {"RelayToken"},
        ("PUT", "/api/v1/agent/public-key"): {"DeviceCredential"},
    }
    for method, path, operation in _operations(document):
        assert _schemes(operation) == expected.get((method, path), {"ApiToken"}), (method, path)


def test_every_error_response_has_the_one_error_shape(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        if path.startswith("/api/v1/"):
            assert "429" in responses, (method, path)
        if _schemes(operation):
            assert "401" in responses, (method, path)
        for status, response in responses.items():
            if status.startswith("4"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)


def test_routes_document_what_their_dependencies_refuse(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert {"401", "403", "404", "413", "415", "422"} <= set(
        paths["/api/v1/orgs/{org_id}/setup-keys"]["post"]["responses"]
    )
    assert {"401", "403"} <= set(paths["/api/v1/users"]["get"]["responses"])
    assert "403" not in paths["/api/v1/users/me"]["get"]["responses"]
