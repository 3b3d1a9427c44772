"""Error classes per kind (issue 10, item 2): one class per kind, raised wherever the kind is.

``EngineError(kind, ...)`` builds the class of that kind, so every raise site in the library
gives the precise class without knowing it; the tree drawn in the errors module docstring is
checked against the classes and the kinds list, so neither can drift.
"""

from __future__ import annotations

import builtins
import copy
import pickle
import re

import httpx
import pytest

import engine
from engine import errors
from engine.errors import ERROR_CLASSES, KINDS, EngineError, ManifestError


def test_one_class_per_kind_and_every_kind_has_one() -> None:
    assert set(ERROR_CLASSES) == set(KINDS)
    for kind, cls in ERROR_CLASSES.items():
        assert issubclass(cls, EngineError) and cls.kind_of_class == kind
        error = EngineError(kind, "text")  # type: ignore[arg-type]
        assert type(error) is cls and error.kind == kind
        assert getattr(engine, cls.__name__) is cls and cls.__name__ in engine.__all__


def test_the_docstring_tree_matches_the_classes() -> None:
    doc = errors.__doc__ or ""
    drawn = dict(re.findall(r"[├└]── (\w+Error)\s+(\w+)", doc))
    drawn.pop("ManifestError")  # drawn under InvalidRequestError, with a description
    assert drawn == {cls.__name__: kind for kind, cls in ERROR_CLASSES.items()}
    assert "│    └── ManifestError" in doc
    assert issubclass(ManifestError, errors.InvalidRequestError)


def test_names_do_not_shadow_builtins() -> None:
    assert not set(errors.__all__) & set(dir(builtins))


def test_a_class_refuses_another_kind() -> None:
    with pytest.raises(ValueError, match="RateLimitError has kind 'rate_limited'"):
        errors.RateLimitError("timeout", "x")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_class_survives_pickle_and_copy(kind: str) -> None:
    error = EngineError(kind, "message", status=500, provider="p")  # type: ignore[arg-type]
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error) and clone.kind == kind and clone.status == 500


def test_raised_through_the_client_with_its_class() -> None:
    """A 429 from the provider is caught as RateLimitError, a bad value as InvalidRequestError."""
    def handle(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": "Rate limit reached", "type": "requests",
                          "code": "rate_limit_exceeded"}}
        return httpx.Response(429, json=body)
    http = httpx.Client(transport=httpx.MockTransport(handle))
    with engine.SyncAiClient.create("openai/gpt-4o-mini", api_key="sk-test-classes",
                                    http_client=http, max_retries=0) as client:
        with pytest.raises(engine.RateLimitError) as caught:
            client.chat().user("hi").execute()
        assert caught.value.kind == "rate_limited" and caught.value.status == 429
        with pytest.raises(engine.InvalidRequestError):
            client.chat().temperature(-1)
    with pytest.raises(engine.ManifestError) as missing:
        engine.SyncAiClient.create("nosuchprovider/m")
    assert isinstance(missing.value, engine.InvalidRequestError)
