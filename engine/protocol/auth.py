"""The registry of auth schemes: how a key is put on a request. Pure.

A manifest's ``auth.scheme`` names one entry of :data:`AUTH_SCHEMES`; the
schema's list of allowed schemes is this registry's keys. Each scheme writes
the key into the outgoing headers or query parameters, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..manifest.model import AuthSpec

__all__ = ["AUTH_SCHEMES", "AuthFn"]

AuthFn = Callable[[AuthSpec, str, dict[str, str], dict[str, str]], None]


def _bearer(spec: AuthSpec, key: str, headers: dict[str, str], query: dict[str, str]) -> None:
    headers["authorization"] = f"Bearer {key}"


def _header(spec: AuthSpec, key: str, headers: dict[str, str], query: dict[str, str]) -> None:
    assert spec.header is not None  # guaranteed by manifest validation
    headers[spec.header.lower()] = f"{spec.prefix}{key}"


def _query(spec: AuthSpec, key: str, headers: dict[str, str], query: dict[str, str]) -> None:
    assert spec.param is not None  # guaranteed by manifest validation
    query[spec.param] = key


def _none(spec: AuthSpec, key: str, headers: dict[str, str], query: dict[str, str]) -> None:
    return None


AUTH_SCHEMES: Mapping[str, AuthFn] = {
    "bearer": _bearer,
    "header": _header,
    "query": _query,
    "none": _none,
}


