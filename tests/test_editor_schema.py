"""The editor schema (issue 10, item 3): one source of truth, used by every manifest.

``protocols/manifest.schema.json`` must be exactly what ``engine.manifest.editor_schema``
generates from the validation schema (regenerate with the command in its docstring), a valid
JSON Schema, and every built-in manifest must name it on its first line and satisfy it, as
checked by a real JSON Schema validator (the ``jsonschema`` package). What the validator
rejects as a shape, the editor schema rejects too; it is not the judge of templates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from engine.manifest.editor_schema import json_schema, render

ROOT = Path(__file__).resolve().parent.parent
FILE = ROOT / "protocols" / "manifest.schema.json"
MANIFESTS = sorted((ROOT / "protocols").glob("*.yaml"))
HEADER = "# yaml-language-server: $schema=./manifest.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(json_schema())
MINIMAL: dict[str, Any] = {
    "manifest": 1, "id": "acme", "base_url": "https://api.acme.test/v1",
    "auth": {"scheme": "bearer", "env": ["ACME_API_KEY"]},
    "chat": {"path": "/chat", "body": {"model": "{{ model }}"},
             "response": {"content": "text"}},
}


def errors(doc: dict[str, Any]) -> list[str]:
    return sorted(e.message for e in VALIDATOR.iter_errors(doc))


def test_the_shipped_file_is_the_generated_schema() -> None:
    assert FILE.read_text() == render(), (
        "stale: run python -m engine.manifest.editor_schema protocols/manifest.schema.json")
    jsonschema.Draft202012Validator.check_schema(json.loads(FILE.read_text()))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_built_in_manifest_names_and_satisfies_it(path: Path) -> None:
    assert path.read_text().splitlines()[0] == HEADER
    assert errors(yaml.safe_load(path.read_text())) == []


def test_it_rejects_what_the_validator_rejects_as_a_shape() -> None:
    assert errors(MINIMAL) == []
    assert errors({**MINIMAL, "endpont": "x"}) == [
        "Additional properties are not allowed ('endpont' was unexpected)"]
    missing = {k: v for k, v in MINIMAL.items() if k != "base_url"}
    assert errors(missing) == ["'base_url' is a required property"]
    bad_kind = {**MINIMAL, "errors": {"rules": [{"status": 429, "kind": "rate_limted"}]}}
    assert len(errors(bad_kind)) == 1 and "rate_limted" in errors(bad_kind)[0]
    bad_scheme = {**MINIMAL, "auth": {"scheme": "beare", "env": ["X"]}}
    assert len(errors(bad_scheme)) == 1


def test_a_child_states_only_its_differences() -> None:
    child = {"manifest": 1, "id": "kid", "extends": "acme",
             "errors": {"rules": {"quota": {"status": 402, "kind": "quota_exhausted",
                                            "$before": "first"}, "old": None}}}
    assert errors(child) == []
    assert errors({**child, "chat": {"pathh": "/x"}}) == [
        "Additional properties are not allowed ('pathh' was unexpected)"]
