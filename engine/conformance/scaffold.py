"""``tools/new-provider``: scaffold a provider manifest and its fixture directory.

Writes ``NAME.yaml`` into the protocols directory (a few lines extending
PARENT, or, without ``--extends``, a complete chat manifest in the common
chat-completions shape to adapt) and ``NAME/README.md`` into the fixtures
directory, listing the scenarios to record; then validates the new manifest
and prints what is left to fill in. It never overwrites an existing file.

Relative ``--protocols`` and ``--fixtures`` are relative to the caller's
working directory. By default both are the repository's (``protocols/`` and
``conformance/fixtures/``); an installed engine has no repository, so there
they must be given (a directory on ``AI_PROTOCOL_PATH``, for instance).
PARENT is looked up in the protocols directory, then on the manifest search
path (``AI_PROTOCOL_PATH``, then the built-in manifests).

The texts written are the files of ``templates/`` beside this module, with
``@name@``, ``@title@``, ``@parent@``, ``@base_url@``, ``@env@``,
``@description@`` and ``@checklist@`` filled in.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..manifest.locate import PATH_ENV, builtin_dir, find_manifest, same_file, search_dirs
from ..validate import validate_paths
from .data import data_dir, in_repository, runner_command
from .fixture import FIXTURES, SCENARIOS

__all__ = ["Plan", "main", "scaffold"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
PROG = "tools/new-provider"


@dataclass(frozen=True)
class Plan:
    """What to write: the provider, what it extends, and where the files go."""

    name: str
    parent: str | None
    base_url: str
    env: str
    protocols: Path
    fixtures: Path


def _fill(template: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def scaffold(plan: Plan) -> list[Path]:
    """Write the manifest and the fixture README; return the files written.

    Raise FileExistsError rather than overwrite a file, OSError when a
    directory cannot be written.
    """
    manifest = plan.protocols / f"{plan.name}.yaml"
    readme = plan.fixtures / plan.name / "README.md"
    for path in (manifest, readme):
        if path.exists():
            raise FileExistsError(f"{path} already exists; not overwriting it")
    values = {"name": plan.name, "parent": plan.parent or "",
              "title": plan.name.replace("-", " ").replace("_", " ").title(),
              "base_url": plan.base_url, "env": plan.env,
              "description": "<one line: which API this is>",
              "checklist": "\n".join(f"- [ ] `{s}.yaml`" for s in SCENARIOS)}
    text = _fill("extending.yaml.in" if plan.parent else "standalone.yaml.in", values)
    readme_text = _fill("fixtures_README.md.in", values)
    manifest.write_text(text, encoding="utf-8")
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(readme_text, encoding="utf-8")
    return [manifest, readme]


def _parser() -> argparse.ArgumentParser:
    repo = in_repository()
    parser = argparse.ArgumentParser(
        prog=PROG, description="Scaffold a provider manifest and its fixture directory.")
    parser.add_argument("name", help="the provider id (lower case, digits, - _ .)")
    parser.add_argument("--extends", metavar="PARENT",
                        help="an existing manifest to build on (e.g. an API-compatible one)")
    parser.add_argument("--base-url", default=None, help="the API's base URL")
    parser.add_argument("--env", default=None, help="the API key's environment variable")
    parser.add_argument("--protocols", type=Path, default=builtin_dir() if repo else None,
                        help="where to write NAME.yaml" +
                             (" (default: the repository's protocols/)" if repo else ""))
    parser.add_argument("--fixtures", type=Path, default=FIXTURES if repo else None,
                        help="where to write NAME/README.md" +
                             (" (default: the repository's conformance/fixtures/)" if repo
                              else ""))
    return parser


def _plan(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Plan:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", args.name):
        parser.error("NAME must be lower case letters, digits, '-', '_' or '.'")
    for option in ("protocols", "fixtures"):
        if getattr(args, option) is None:
            parser.error(f"--{option} DIR is required outside the repository")
    if not args.protocols.is_dir():
        parser.error(f"--protocols: {args.protocols} is not a directory")
    if args.extends and find_manifest(args.extends, [args.protocols, *search_dirs()]) is None:
        parser.error(f"--extends: no manifest {args.extends!r} in {args.protocols} or on the "
                     f"search path ({', '.join(str(d) for d in search_dirs())})")
    env = args.env or re.sub(r"[^A-Z0-9]", "_", args.name.upper()) + "_API_KEY"
    return Plan(args.name, args.extends, args.base_url or f"https://api.{args.name}.example/v1",
                env, args.protocols, args.fixtures)


def _on_search_path(directory: Path) -> bool:
    return any(same_file(directory, d) for d in search_dirs())


def _next_steps(plan: Plan, written: list[Path], placeholder: bool) -> str:
    manifest, fixtures = written[0], written[1].parent
    lines = ["", "Next:",
             f"  1. Edit {manifest}: base_url{' (still a placeholder)' if placeholder else ''}, "
             "auth, models, and every section where the API differs"
             + ("." if plan.parent else " (it is a full chat-completions manifest now)."),
             f"  2. python -m engine.validate {manifest}",
             f"  3. Add fixtures to {fixtures} for: {', '.join(SCENARIOS)}",
             f"     (tools/record {plan.name}/<model> --scenario text --user \"Hello\" "
             f"--out {fixtures}/text.yaml)",
             f"  4. {runner_command()} -k {plan.name}/   until the matrix row is all pass."]
    if not _on_search_path(plan.protocols):
        lines.insert(2, f"  0. {plan.protocols} is not on the manifest search path: add it to "
                        f"{PATH_ENV} ({PATH_ENV}={plan.protocols.resolve()}{os.pathsep}...)")
    if not same_file(plan.fixtures, data_dir() / "fixtures"):
        lines[-1] += f" (with --fixtures {plan.fixtures})"
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Scaffold; 0 written and valid, 1 not written or not valid, 2 bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    plan = _plan(parser, args)
    try:
        written = scaffold(plan)
    except OSError as exc:  # FileExistsError included: never overwrite
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    _, problems = validate_paths([str(written[0])])
    print("manifest validates" if not problems else "\n".join(problems))
    print(_next_steps(plan, written, placeholder=not args.base_url))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
