"""The credential stage: credentials obtained at run time, for the sourced auth schemes.

:func:`credential_for` gives the :class:`~engine.protocol.auth.Credential` of
one target, or None for the static-key schemes (whose key the render stage
writes as it always has):

* ``bearer-token``: the key passed as ``api_key=``, else the first set variable
  of ``auth.env``, is a fixed token. Without one, ``auth.command`` (an argv,
  never a shell) is run and its output, stripped, is the token, reused for
  ``auth.lifetime`` seconds and fetched again after an ``authentication``
  error. A command that is missing, fails, times out or prints nothing usable
  is an ``authentication`` error naming the command (never its output's
  token).
* ``bearer-token`` with ``auth.credentials: application-default``: the token
  of the application-default credentials of the library ``auth.library`` names
  (a module with ``default(scopes=)`` -> ``(credentials, project)``, whose
  credentials ``refresh(request)`` and carry ``token`` and ``expiry``; installed
  by the package extra ``auth.extra``, which the error names when it is
  missing), for ``auth.scopes``, refreshed five minutes before it expires. Its
  token requests go through the standard library (no extra HTTP package).
* ``aws-sigv4``: the request is signed (Signature Version 4) with the
  ``auth.service`` name and the ``auth.region`` rendered from settings, by
  ``botocore`` (the optional extra ``engine[aws]``; a clear error names it
  when it is missing). Credentials: ``api_key="ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]"``,
  else botocore's standard chain (environment, shared files, SSO, instance
  roles), resolved in :meth:`refresh` and refreshed before they expire.

``stale``/``refresh`` may do I/O; the client calls them before a plan starts
(in a worker thread for async clients), so rendering and signing stay pure.
Every token, secret and session token is registered for redaction.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .. import inputs
from ..errors import EngineError, excerpt, redact, register_secret
from ..manifest.model import Manifest
from ..manifest.templates import render_checked
from ..protocol.auth import SIGNING_SCHEME, TOKEN_SCHEME, Credential
from ..protocol.render import PreparedRequest

__all__ = ["COMMAND_TIMEOUT", "ApplicationDefaultToken", "CommandToken", "SigV4",
           "credential_for"]

COMMAND_TIMEOUT = 30.0
SIGNING_EXTRA = "engine[aws]"
# Refresh temporary credentials this long before they expire.
EXPIRY_MARGIN = 300.0


def _auth_error(message: str, provider: str) -> EngineError:
    return EngineError("authentication", message, provider=provider, retryable=False)


class CommandToken:
    """A bearer token printed by a command, cached for its lifetime."""

    def __init__(self, argv: tuple[str, ...], lifetime: float, provider: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.argv = argv
        self.lifetime = lifetime
        self.provider = provider
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def stale(self) -> bool:
        return self._token is None or self._clock() >= self._expires

    def refresh(self) -> None:
        with self._lock:
            if not self.stale():
                return
            token = self._run()
            register_secret(token)
            self._token, self._expires = token, self._clock() + self.lifetime

    def _run(self) -> str:
        import subprocess  # only where a token command runs

        shown = self.argv[0]
        try:
            done = subprocess.run(self.argv, capture_output=True, timeout=COMMAND_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise _auth_error(f"the token command {shown!r} of {self.provider} was not "
                              f"found; install it, or pass the token as api_key=",
                              self.provider) from None
        except subprocess.TimeoutExpired:
            raise _auth_error(f"the token command {shown!r} of {self.provider} did not "
                              f"finish within {COMMAND_TIMEOUT:.0f} s", self.provider) from None
        except OSError as exc:
            raise _auth_error(f"the token command {shown!r} of {self.provider} could not "
                              f"run: {exc.strerror or exc}", self.provider) from None
        if done.returncode != 0:
            said = excerpt(done.stderr.decode("utf-8", "replace").strip(), 300)
            raise _auth_error(f"the token command {shown!r} of {self.provider} failed "
                              f"(exit {done.returncode}): {said}", self.provider)
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        token = lines[-1].strip() if lines else ""
        if not token or inputs.api_key_problem(token) is not None:
            register_secret(token or None)
            raise _auth_error(f"the token command {shown!r} of {self.provider} printed no "
                              f"usable token (expected one line of printable ASCII)",
                              self.provider)
        return token

    def key(self) -> str | None:
        return self._token

    def apply(self, prepared: PreparedRequest) -> PreparedRequest:
        return prepared

    def forget(self) -> None:
        with self._lock:
            self._token = None

    def __repr__(self) -> str:
        return f"CommandToken({self.argv[0]!r}, cached={self._token is not None})"


def _credentials_library(module: str, extra: str | None, provider: str) -> Any:
    import importlib

    try:
        library = importlib.import_module(module)
        importlib.import_module(f"{module}.exceptions")
    except ImportError:
        install = f"pip install 'engine[{extra}]'" if extra else f"install {module}"
        raise EngineError("invalid_request", f"the application-default credentials of "
                          f"{provider} need {module}: {install}", provider=provider,
                          retryable=False) from None
    return library


class _Response:
    """What the credentials library reads of an HTTP answer."""

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status, self.headers, self.data = status, dict(headers), data


def _token_request(url: str, method: str = "GET", body: bytes | None = None,
                   headers: Mapping[str, str] | None = None, timeout: float | None = None,
                   **_: Any) -> _Response:
    """The library's transport, over urllib: token and metadata requests only."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout or COMMAND_TIMEOUT) as answer:
            return _Response(answer.status, dict(answer.headers), answer.read())
    except urllib.error.HTTPError as exc:
        return _Response(exc.code, dict(exc.headers or {}), exc.read())
    except OSError as exc:
        raise _TransportFailed(str(exc)) from None


class _TransportFailed(Exception):
    """A token request that got no answer (wrapped into the library's own error)."""


class ApplicationDefaultToken:
    """A bearer token from the application-default credentials, refreshed before expiry."""

    def __init__(self, scopes: tuple[str, ...], provider: str, library: str,
                 extra: str | None) -> None:
        self.scopes, self.provider = scopes, provider
        self._library = _credentials_library(library, extra, provider)
        self._credentials: Any = None
        self._lock = threading.Lock()

    def stale(self) -> bool:
        creds = self._credentials
        if creds is None or not creds.token:
            return True
        expiry = getattr(creds, "expiry", None)
        if expiry is None:
            return False
        left = expiry.replace(tzinfo=None) - _utcnow()
        return bool(left.total_seconds() < EXPIRY_MARGIN)

    def refresh(self) -> None:
        library = self._library
        with self._lock:
            try:
                if self._credentials is None:
                    self._credentials, _ = library.default(scopes=list(self.scopes) or None)
                self._credentials.refresh(_token_request)
            except Exception as exc:  # the library's errors, and _TransportFailed
                raise _auth_error(f"the application-default credentials of {self.provider} "
                                  f"gave no token: {redact(str(exc))}", self.provider) from None
            register_secret(self._credentials.token)

    def key(self) -> str | None:
        return None if self._credentials is None else self._credentials.token

    def apply(self, prepared: PreparedRequest) -> PreparedRequest:
        return prepared

    def forget(self) -> None:
        with self._lock:
            if self._credentials is not None:
                self._credentials.token = None

    def __repr__(self) -> str:
        return f"ApplicationDefaultToken(scopes={list(self.scopes)!r})"


def _utcnow() -> Any:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _botocore() -> Any:
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.session
    except ImportError:
        raise EngineError("invalid_request", f"request signing ({SIGNING_SCHEME}) needs "
                          f"botocore: pip install '{SIGNING_EXTRA}'", retryable=False) from None
    return botocore


class SigV4:
    """Signature Version 4 signing of each rendered request."""

    def __init__(self, service: str, region: str, provider: str,
                 explicit: str | None = None) -> None:
        self.service, self.region, self.provider = service, region, provider
        self._botocore = _botocore()
        self._source: Any = None
        self._frozen: Any = None
        self._lock = threading.Lock()
        if explicit is not None:
            self._source = self._explicit(explicit)

    def _explicit(self, value: str) -> Any:
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            raise EngineError("invalid_request", f"api_key for {self.provider} "
                              f"({SIGNING_SCHEME}) must be 'ACCESS_KEY_ID:SECRET_ACCESS_KEY' "
                              f"or 'ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN'",
                              provider=self.provider, retryable=False)
        for part in parts[1:]:
            register_secret(part)
        token = parts[2] if len(parts) == 3 and parts[2] else None
        return self._botocore.credentials.Credentials(parts[0], parts[1], token)

    def stale(self) -> bool:
        if self._frozen is None:
            return True
        expiry = getattr(self._source, "_expiry_time", None)
        if expiry is None:
            return False
        return bool(expiry.timestamp() - time.time() < EXPIRY_MARGIN)

    def refresh(self) -> None:
        with self._lock:
            if self._source is None:
                self._source = self._botocore.session.get_session().get_credentials()
            if self._source is None:
                raise _auth_error(f"no credentials for {self.provider} ({SIGNING_SCHEME}): "
                                  f"configure the standard credential chain (environment, "
                                  f"shared credentials file, SSO or an instance role) or "
                                  f"pass api_key='ACCESS_KEY_ID:SECRET_ACCESS_KEY'",
                                  self.provider)
            try:
                frozen = self._source.get_frozen_credentials()
            except Exception as exc:  # botocore raises many kinds; all mean "no credentials"
                raise _auth_error(f"the credentials of {self.provider} could not be "
                                  f"refreshed: {redact(str(exc))}", self.provider) from None
            register_secret(frozen.secret_key)
            register_secret(frozen.token)
            self._frozen = frozen

    def key(self) -> str | None:
        return None

    def apply(self, prepared: PreparedRequest) -> PreparedRequest:
        """The request with its signature headers (``refresh`` ran before)."""
        if self._frozen is None:
            self.refresh()
        bc = self._botocore
        request = bc.awsrequest.AWSRequest(method=prepared.method, url=prepared.url,
                                           data=prepared.body, headers=dict(prepared.headers))
        bc.auth.SigV4Auth(self._frozen, self.service, self.region).add_auth(request)
        headers = tuple((name.lower(), str(value)) for name, value in request.headers.items())
        secrets = tuple(s for s in (self._frozen.secret_key, self._frozen.token) if s)
        return replace(prepared, headers=headers, secrets=prepared.secrets + secrets)

    def forget(self) -> None:
        with self._lock:
            self._frozen = None

    def __repr__(self) -> str:
        return f"SigV4({self.service!r}, {self.region!r})"


def credential_for(manifest: Manifest, api_key: str | None,
                   settings: Mapping[str, str | None]) -> Credential | None:
    """The run-time credential of a target of *manifest*, or None (a static key)."""
    auth = manifest.auth
    if auth.scheme == TOKEN_SCHEME:
        if api_key is not None or any(os.environ.get(name) for name in auth.env):
            return None  # a fixed token: written like a bearer key
        if auth.credentials == "application-default":
            assert auth.library is not None  # validated: credentials need a library
            return ApplicationDefaultToken(auth.scopes, manifest.id, auth.library, auth.extra)
        return CommandToken(auth.command, auth.lifetime, manifest.id)
    if auth.scheme == SIGNING_SCHEME:
        assert auth.service is not None and auth.region is not None  # validated
        region = render_checked(auth.region, {"settings": dict(settings)}, "auth.region",
                                manifest.id)
        if not isinstance(region, str) or not region:
            raise EngineError("invalid_request", f"{manifest.id} has no region for "
                              f"signing (auth.region rendered to {region!r}); give the "
                              f"setting it reads", provider=manifest.id, retryable=False)
        return SigV4(auth.service, region, manifest.id, explicit=api_key)
    return None
