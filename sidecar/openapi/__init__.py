"""OpenAPI descriptions of the JSON endpoints, served at ``/openapi.json`` by each server.

``sidecar.json`` describes the sidecar (:9090), ``dashboard.json`` the dashboard (:9000). The
reliability tests run schemathesis against the live servers with them.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["load"]


def load(name: str) -> bytes:
    """The document ``name`` (``sidecar`` or ``dashboard``) as JSON bytes."""
    return (resources.files(__name__) / f"{name}.json").read_bytes()
