"""``tools/new-provider NAME [--extends PARENT]``: scaffold a manifest and its fixtures.

Writes ``protocols/NAME.yaml`` (a few lines extending PARENT, or, without
``--extends``, a complete OpenAI-style chat manifest to adapt) and
``conformance/fixtures/NAME/README.md`` listing the scenarios to record, then
validates the new manifest and prints what is left to fill in. It never
overwrites an existing file.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.validate import validate_paths

from .fixture import FIXTURES, SCENARIOS

__all__ = ["main", "scaffold"]

ROOT = Path(__file__).resolve().parent.parent

EXTENDING = """\
# {title}: {description}
# Sources: <the provider's API reference pages you built this from>
manifest: 1
id: {name}
extends: {parent}
name: {title}
base_url: {base_url}
auth:
  scheme: bearer
  env: [{env}]

models: {{}}
# Add only what differs from {parent}: e.g. chat.overrides: [] to drop its
# model-family overrides, finish_reasons for extra raw values, errors.rules.
"""

STANDALONE = """\
# {title}: {description}
# Sources: <the provider's API reference pages you built this from>
# A complete chat manifest in the common chat-completions shape; adapt each
# section to the provider (see protocols/README.md for every key).
manifest: 1
id: {name}
name: {title}
base_url: {base_url}
auth:
  scheme: bearer
  env: [{env}]
capabilities: {{tools: true, stream: true}}
models: {{}}

chat:
  path: /chat/completions
  body:
    model: "{{{{ model }}}}"
    messages:
      $each: "{{{{ messages }}}}"
      as: m
      do:
        $switch: "{{{{ m.role }}}}"
        cases:
          tool: {{role: tool, tool_call_id: "{{{{ m.tool_call_id }}}}", content: "{{{{ m.content }}}}"}}
          assistant:
            role: assistant
            content: "{{{{ m.content if (m.content or not m.tool_calls) else none }}}}"
            tool_calls:
              $if: "{{{{ m.tool_calls }}}}"
              then:
                $each: "{{{{ m.tool_calls }}}}"
                as: tc
                do:
                  id: "{{{{ tc.id }}}}"
                  type: function
                  function: {{name: "{{{{ tc.name }}}}", arguments: "{{{{ tc.arguments_json }}}}"}}
        default: {{role: "{{{{ m.role }}}}", content: "{{{{ m.content }}}}"}}
    temperature: "{{{{ params.temperature }}}}"
    top_p: "{{{{ params.top_p }}}}"
    max_tokens: "{{{{ params.max_tokens }}}}"
    stop: "{{{{ params.stop }}}}"
    tools:
      $each: "{{{{ tools }}}}"
      as: t
      do:
        type: function
        function: {{name: "{{{{ t.name }}}}", description: "{{{{ t.description or none }}}}", parameters: "{{{{ t.parameters }}}}"}}
    tool_choice:
      $if: "{{{{ tool_choice }}}}"
      then:
        $switch: "{{{{ tool_choice.mode }}}}"
        cases:
          tool: {{type: function, function: {{name: "{{{{ tool_choice.name }}}}"}}}}
        default: "{{{{ tool_choice.mode }}}}"
  response:
    content: choices[0].message.content
    tool_calls: "choices[0].message.tool_calls[].{{id: id, name: function.name, arguments: function.arguments}}"
    finish_reason: choices[0].finish_reason
    usage:
      prompt_tokens: usage.prompt_tokens
      completion_tokens: usage.completion_tokens
      total_tokens: usage.total_tokens
  stream:
    body: {{stream: true}}
    framing: sse
    end: [{{data: "[DONE]"}}]
    events:
      - when: error
        error: {{message: error.message, code: error.code, type: error.type}}
      - when: "!error"
        content: choices[0].delta.content
        tool_call:
          each: choices[0].delta.tool_calls
          key: index
          id: id
          name: function.name
          arguments: function.arguments
        finish_reason: choices[0].finish_reason
        usage: {{prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens}}

finish_reasons: {{stop: stop, length: length, tool_calls: tool_calls, content_filter: content_filter}}

errors:
  message: error.message
  code: error.code
  type: error.type
  rules: []
  retry_after:
    - {{header: retry-after, unit: s}}
"""

FIXTURE_README = """\
# Fixtures for `{name}`

Record one exchange per scenario (`tools/record {name}/<model> --scenario <s> ...`)
or write it from the provider's documentation, saying so in `source`. The
suite fails until each required scenario has a fixture here, or the manifest
declares the capability it lacks (`capabilities: {{tools: false}}` and the like).

{checklist}
"""


def scaffold(name: str, parent: str | None, base_url: str, env: str,
             protocols: Path, fixtures: Path) -> list[Path]:
    """Write the manifest and the fixture README; return the files written."""
    manifest = protocols / f"{name}.yaml"
    readme = fixtures / name / "README.md"
    for path in (manifest, readme):
        if path.exists():
            raise FileExistsError(f"{path} already exists; not overwriting it")
    title = name.replace("-", " ").replace("_", " ").title()
    values = {"name": name, "parent": parent, "title": title, "base_url": base_url,
              "env": env, "description": "<one line: which API this is>"}
    template = EXTENDING if parent else STANDALONE
    manifest.write_text(template.format(**values))
    readme.parent.mkdir(parents=True, exist_ok=True)
    checklist = "\n".join(f"- [ ] `{s}.yaml`" for s in SCENARIOS)
    readme.write_text(FIXTURE_README.format(name=name, checklist=checklist))
    return [manifest, readme]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/new-provider", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the provider id (lower case, digits, - _ .)")
    parser.add_argument("--extends", metavar="PARENT", help="an existing manifest to build on")
    parser.add_argument("--base-url", default=None, help="the API's base URL")
    parser.add_argument("--env", default=None, help="the API key's environment variable")
    parser.add_argument("--protocols", type=Path, default=ROOT / "protocols")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", args.name):
        parser.error("NAME must be lower case letters, digits, '-', '_' or '.'")
    if args.extends and not (args.protocols / f"{args.extends}.yaml").is_file():
        parser.error(f"--extends: no manifest {args.extends!r} in {args.protocols}")
    env = args.env or re.sub(r"[^A-Z0-9]", "_", args.name.upper()) + "_API_KEY"
    base_url = args.base_url or f"https://api.{args.name}.example/v1"
    try:
        written = scaffold(args.name, args.extends, base_url, env, args.protocols,
                           args.fixtures)
    except FileExistsError as exc:
        print(f"tools/new-provider: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    _, problems = validate_paths([str(written[0])])
    print("manifest validates" if not problems else "\n".join(problems))
    print(f"""
Next:
  1. Edit {written[0]}: base_url{' (still a placeholder)' if not args.base_url else ''}, \
auth, models, and every section where the API differs{'' if args.extends else ' (it is a full chat-completions manifest now)'}.
  2. python -m engine.validate {written[0]}
  3. Add fixtures to {written[1].parent} for: {', '.join(SCENARIOS)}
     (tools/record {args.name}/<model> --scenario text --user "Hello" --out {written[1].parent}/text.yaml)
  4. python -m conformance -k {args.name}/   until the matrix row is all pass.""")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
