"""The registry of auth schemes: how a credential is put on a request. Pure.

A manifest's ``auth.scheme`` names one entry of :data:`AUTH_SCHEMES`; the
schema's list of allowed schemes is this registry's keys. Each scheme writes
the key into the outgoing headers or query parameters, nothing else.

Two schemes get their credential from a source rather than a static key
(:data:`SOURCED_SCHEMES`, implemented in :mod:`engine.io.credentials`):
``bearer-token`` writes a token that a command prints (cached for
``auth.lifetime`` seconds), and ``aws-sigv4`` signs the whole rendered request
(Signature Version 4, with the standard credential chain). Render time sees
them as a bearer key and as nothing; :class:`Credential` is what the
credential stage hands the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from ..manifest.model import AuthSpec

if TYPE_CHECKING:
    from .render import PreparedRequest

__all__ = ["AUTH_SCHEMES", "SIGNING_SCHEME", "SOURCED_SCHEMES", "TOKEN_SCHEME", "AuthFn",
           "Credential"]

TOKEN_SCHEME = "bearer-token"
# The name of Signature Version 4 request signing as its issuer spells it.
SIGNING_SCHEME = "aws-sigv4"
SOURCED_SCHEMES = frozenset({TOKEN_SCHEME, SIGNING_SCHEME})


class Credential(Protocol):
    """A credential obtained at run time. ``stale``/``refresh`` may do I/O (run a
    command, read credential files) and are called before a plan starts, in a worker
    thread for async clients; ``key`` and ``apply`` only read what ``refresh`` got."""

    def stale(self) -> bool: ...

    def refresh(self) -> None: ...

    def key(self) -> str | None: ...

    def apply(self, prepared: PreparedRequest) -> PreparedRequest: ...

    def forget(self) -> None: ...

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
    TOKEN_SCHEME: _bearer,  # the token the credential source got
    SIGNING_SCHEME: _none,  # signed after rendering (Credential.apply)
}


