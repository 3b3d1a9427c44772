"""``ai-engine`` (also ``python -m engine``): the library from a shell.

Commands:

* ``chat MODEL PROMPT`` sends one user turn (``PROMPT`` ``-`` reads it from
  stdin up to EOF, one trailing newline dropped) and streams the answer: text
  deltas go to stdout as they arrive, flushed each time, and the answer ends
  with a newline; thinking deltas go to stderr as they arrive, dimmed (ANSI
  faint) when stderr is a terminal and ``NO_COLOR`` is unset, followed by a
  newline before the answer starts. After the answer, stderr gets one line per
  tool call (``tool call: NAME ARGUMENTS``) and ``finish reason: X`` when X is
  neither ``stop`` nor ``tool_calls``. Options: ``--system``, ``--temperature``,
  ``--max-tokens``, ``--base-url``, ``--timeout`` (seconds for every phase),
  ``--no-stream`` (one request, the same output once complete), ``--json``
  (nothing as it arrives; one JSON object on stdout: ``content``,
  ``thinking``, ``tool_calls`` [{id, name, arguments}], ``finish_reason``,
  ``usage`` and ``stats`` as plain data), ``--api-key-env NAME``.
* ``providers`` lists the manifests on the search path (``AI_PROTOCOL_PATH``
  directories, then the built-in ones; the first file of an id wins, as for a
  client): id, name, tools, stream, tool_choice modes, catalogue size, where it
  was found (``built-in`` or the file). ``--json``: a list of objects. A
  manifest that fails to load, or an ``AI_PROTOCOL_PATH`` entry that is not a
  directory, is one error line on stderr; the others are still listed and the
  exit status is 1.
* ``models PROVIDER`` prints the manifest's catalogue: id, context window, max
  output (``-`` when unknown); ``--json``: a list of objects.
* ``validate ARGS...`` and ``conformance ARGS...`` hand their arguments to
  ``python -m engine.validate`` and ``python -m engine.conformance``
  unchanged, with their output and exit status.

The API key is never taken from the command line and never printed: the
client reads the manifest's environment variables, or ``$NAME`` with
``--api-key-env NAME``. ``ENGINE_LOG`` (:mod:`engine.logsetup`) is applied at
start.

Exit status: 0 success; 1 a runtime failure, reported as one line on stderr,
``error: KIND: MESSAGE`` with ``(HTTP N)`` when there was a status (KIND is an
``EngineError`` kind, ``internal`` for an unexpected exception, ``io`` for a
failed read or write); 130 when interrupted; 2 a usage error (unknown command
or option, a bad option value, an empty prompt), in argparse's words. No
traceback is shown unless ``--debug`` is given (before or after the command).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .errors import EngineError
from .logsetup import configure_from_env

if TYPE_CHECKING:
    from .client import SyncChat
    from .manifest.model import Manifest
    from .types import ChatResponse, Stats

__all__ = ["main"]

_DIM, _RESET = "\x1b[2m", "\x1b[0m"
_MODE_ORDER = ("auto", "none", "required", "tool")


# ---------------------------------------------------------------- entry point

def main(argv: Sequence[str] | None = None, prog: str = "ai-engine") -> int:
    """Run one command line (*argv* without the program name); the exit status."""
    configure_from_env()
    args = list(sys.argv[1:] if argv is None else argv)
    alias = _alias_of(args)
    if alias is not None:
        name, rest = alias
        return _guarded(lambda: _ALIASES[name](rest), "--debug" in args[: args.index(name)])
    parser = _parser(prog)
    options = args[: args.index("--")] if "--" in args else args
    if any(arg == "--api-key" or arg.startswith("--api-key=") for arg in options):
        parser.error("the API key is never taken from the command line: set the variable the "
                     "manifest names, or name another with --api-key-env NAME")
    parsed = parser.parse_args(args)
    return _guarded(lambda: int(parsed.handler(parsed)), parsed.debug)


def _alias_of(args: list[str]) -> tuple[str, list[str]] | None:
    """(alias, its arguments) when the command is a pass-through alias."""
    at = 0
    while at < len(args) and args[at] == "--debug":
        at += 1
    if at < len(args) and args[at] in _ALIASES:
        return args[at], args[at + 1:]
    return None


def _guarded(run: Callable[[], int], debug: bool) -> int:
    """*run*'s status; a failure as one ``error:`` line (and its traceback under --debug)."""
    try:
        return run()
    except KeyboardInterrupt:
        return _fail("cancelled", "interrupted", debug, status=130)
    except BrokenPipeError:  # the reader left (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except EngineError as exc:
        http = f" (HTTP {exc.status})" if exc.status is not None else ""
        return _fail(exc.kind, exc.message + http, debug)
    except OSError as exc:
        return _fail("io", str(exc), debug)
    except Exception as exc:
        return _fail("internal", f"{type(exc).__name__}: {exc}", debug)


def _fail(kind: str, message: str, debug: bool, status: int = 1) -> int:
    """Report the exception being handled; *status*."""
    if debug:
        traceback.print_exc()
    _error_line(kind, message)
    return status


def _error_line(kind: str, message: str) -> None:
    print(f"error: {kind}: {_one_line(message)}", file=sys.stderr)


def _one_line(text: str) -> str:
    """*text* on one line: a line ending in ':' runs on, the others are joined by '; '."""
    out = ""
    for line in filter(None, (part.strip() for part in text.splitlines())):
        out += ("" if not out else " " if out.endswith(":") else "; ") + line
    return out


# ---------------------------------------------------------------- the parser

def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="One client for every LLM provider, from a shell.",
        epilog=f"'{prog} COMMAND --help' describes a command. The API key comes from the "
               "environment variable the provider's manifest names; ENGINE_LOG=debug|info|"
               "warning shows the library's log on stderr.")
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a failure")
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of a failure")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_chat(commands, common, prog)
    _add_providers(commands, common)
    _add_models(commands, common)
    for name, what in (("validate", "check manifest files"),
                       ("conformance", "replay the recorded exchanges against the manifests")):
        alias = commands.add_parser(name, add_help=False, allow_abbrev=False,
                                    help=f"{what} (python -m engine.{name})")
        alias.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _add_chat(commands: Any, common: argparse.ArgumentParser, prog: str) -> None:
    chat = commands.add_parser(
        "chat", parents=[common], allow_abbrev=False, help="send a prompt and stream the answer",
        description="Send one prompt to MODEL and stream the answer: text on stdout as it\n"
                    "arrives, thinking (if any) on stderr, dimmed on a terminal. The API key\n"
                    "comes from the variable the provider's manifest names (or --api-key-env).",
        epilog=f"examples:\n  {prog} chat provider/model 'What is the capital of France?'\n"
               f"  echo 'Summarize this' | {prog} chat provider/model - --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    chat.add_argument("model", metavar="MODEL", help="provider/model, e.g. provider/model-name")
    chat.add_argument("prompt", metavar="PROMPT", help="the user's message; '-' reads stdin")
    chat.add_argument("--system", metavar="TEXT", help="a system message before the prompt")
    chat.add_argument("--temperature", type=float, metavar="T", help="sampling temperature, 0-2")
    chat.add_argument("--max-tokens", type=int, metavar="N", help="the answer's token limit")
    chat.add_argument("--base-url", metavar="URL", help="replace the manifest's base URL")
    chat.add_argument("--timeout", type=float, metavar="SECONDS",
                      help="limit for every phase (connect, read, write, pool)")
    chat.add_argument("--api-key-env", metavar="NAME",
                      help="read the API key from $NAME instead of the manifest's variables")
    chat.add_argument("--no-stream", action="store_true",
                      help="one request, printed when complete")
    chat.add_argument("--json", action="store_true",
                      help="print one JSON object: content, thinking, tool_calls, "
                           "finish_reason, usage, stats")
    chat.set_defaults(handler=_chat, parser=chat)


def _add_providers(commands: Any, common: argparse.ArgumentParser) -> None:
    providers = commands.add_parser(
        "providers", parents=[common], allow_abbrev=False, help="list the manifests found",
        description="List the manifests on the search path (AI_PROTOCOL_PATH, then the "
                    "built-in ones): id, name, capabilities, where each was found.")
    providers.add_argument("--json", action="store_true", help="print a JSON list")
    providers.set_defaults(handler=_providers)


def _add_models(commands: Any, common: argparse.ArgumentParser) -> None:
    models = commands.add_parser(
        "models", parents=[common], allow_abbrev=False, help="list a provider's model catalogue",
        description="List the models PROVIDER's manifest describes: id, context window, "
                    "max output tokens.")
    models.add_argument("provider", metavar="PROVIDER",
                        help="a provider id: the part of a model id before the '/'")
    models.add_argument("--json", action="store_true", help="print a JSON list")
    models.set_defaults(handler=_models)


def _validate(argv: list[str]) -> int:
    from .validate import main as validate_main

    return validate_main(argv)


def _conformance(argv: list[str]) -> int:
    from .conformance.__main__ import main as conformance_main

    return conformance_main(argv)


_ALIASES: dict[str, Callable[[list[str]], int]] = {
    "validate": _validate, "conformance": _conformance}


# ---------------------------------------------------------------- chat

def _chat(args: argparse.Namespace) -> int:
    from .client import SyncAiClient

    prompt = _prompt(args)
    options: dict[str, Any] = {"api_key": _key(args), "base_url": args.base_url}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    with SyncAiClient.create(args.model, **options) as client:
        chat = _request(client.chat(), args, prompt)
        answer = _Answer(sys.stdout, sys.stderr, enabled=not args.json)
        resp, stats = (_complete(chat, answer) if args.no_stream else _streamed(chat, answer))
    if args.json:
        print(json.dumps(_as_data(resp, stats), ensure_ascii=False, default=_plain))
    else:
        _notes(resp)
    return 0


def _prompt(args: argparse.Namespace) -> str:
    text: str = args.prompt
    if text == "-":
        text = sys.stdin.read()
        text = text[:-1] if text.endswith("\n") else text
    if not text.strip():
        args.parser.error("the prompt is empty")
    return text


def _key(args: argparse.Namespace) -> str | None:
    """The key of ``--api-key-env``, or None (the client reads the manifest's variables).

    The name is never repeated in a message: a key typed in its place must not be echoed.
    """
    name: str | None = args.api_key_env
    if name is None:
        return None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        args.parser.error("--api-key-env takes the name of an environment variable "
                          "(letters, digits, '_'), not a key")
    value = os.environ.get(name)
    if not value:
        raise EngineError("authentication",
                          "no API key: the variable named by --api-key-env is not set")
    return value


def _request(chat: SyncChat, args: argparse.Namespace, prompt: str) -> SyncChat:
    if args.system is not None:
        chat = chat.system(args.system)
    chat = chat.user(prompt)
    if args.temperature is not None:
        chat = chat.temperature(args.temperature)
    if args.max_tokens is not None:
        chat = chat.max_tokens(args.max_tokens)
    return chat


def _streamed(chat: SyncChat, answer: _Answer) -> tuple[ChatResponse, Stats]:
    with chat.stream() as stream:
        for event in stream:
            if event.is_thinking_delta:
                answer.thinking(event.as_thinking_delta.text)
            elif event.is_content_delta:
                answer.content(event.as_content_delta.text)
        answer.close()
        return stream.response, stream.stats


def _complete(chat: SyncChat, answer: _Answer) -> tuple[ChatResponse, Stats]:
    resp, stats = chat.execute_with_stats()
    answer.thinking(resp.thinking or "")
    answer.content(resp.content)
    answer.close()
    return resp, stats


class _Answer:
    """Writes an answer as it arrives: text to *out*, thinking to *err* (dimmed on a tty)."""

    def __init__(self, out: TextIO, err: TextIO, *, enabled: bool) -> None:
        self._out, self._err, self._enabled = out, err, enabled
        self._dim = enabled and err.isatty() and not os.environ.get("NO_COLOR")
        self._thought = self._said = ""  # the last character written to each

    def thinking(self, text: str) -> None:
        if self._enabled and text:
            self._err.write(f"{_DIM}{text}{_RESET}" if self._dim else text)
            self._err.flush()
            self._thought = text[-1]

    def content(self, text: str) -> None:
        if self._enabled and text:
            self._end_thinking()
            self._out.write(text)
            self._out.flush()
            self._said = text[-1]

    def close(self) -> None:
        self._end_thinking()
        if self._said not in ("", "\n"):
            self._out.write("\n")
            self._out.flush()

    def _end_thinking(self) -> None:
        if self._thought not in ("", "\n"):
            self._err.write("\n")
            self._err.flush()
        self._thought = ""


def _notes(resp: ChatResponse) -> None:
    for call in resp.tool_calls:
        print(f"tool call: {call.name} {call.arguments_json}", file=sys.stderr)
    if resp.finish_reason not in ("stop", "tool_calls"):
        print(f"finish reason: {resp.finish_reason}", file=sys.stderr)


def _as_data(resp: ChatResponse, stats: Stats) -> dict[str, Any]:
    return {"content": resp.content, "thinking": resp.thinking,
            "tool_calls": [call.to_dict() for call in resp.tool_calls],
            "finish_reason": resp.finish_reason, "usage": dataclasses.asdict(resp.usage),
            "stats": dataclasses.asdict(stats)}


def _plain(value: object) -> object:
    """JSON for what ``dataclasses.asdict`` leaves as is (read-only mappings, sets)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


# ---------------------------------------------------------------- providers, models

def _providers(args: argparse.Namespace) -> int:
    from .manifest.load import load_manifest

    found, failures = _manifest_files()
    rows = []
    for ident, path in found:
        try:
            rows.append(_provider_row(load_manifest(ident), path))
        except EngineError as exc:
            failures.append(exc)
    for failure in failures:
        _error_line(failure.kind, failure.message)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _table([[r["id"], r["name"], _yes(r["tools"]), _yes(r["stream"]),
                 ",".join(r["tool_choice"]) or "-", str(r["models"]),
                 "built-in" if r["builtin"] else r["source"]] for r in rows],
               ["ID", "NAME", "TOOLS", "STREAM", "TOOL_CHOICE", "MODELS", "SOURCE"])
    return 1 if failures else 0


def _manifest_files() -> tuple[list[tuple[str, Path]], list[EngineError]]:
    """(id, file) of the first file of each id on the search path; the unusable entries."""
    from .manifest.locate import PATH_ENV, id_problem, search_dirs, valid_id

    found: dict[str, Path] = {}
    problems: list[EngineError] = []
    for directory in search_dirs():
        try:
            files = sorted((p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")),
                           key=lambda p: p.stem)
        except OSError as exc:
            problems.append(EngineError("invalid_request", f"{PATH_ENV} names {directory}: "
                                        f"{exc.strerror or exc}"))
            continue
        for path in files:
            if not valid_id(path.stem):
                problems.append(EngineError("invalid_request", f"{path}: " + id_problem(
                    path.stem)))
            elif path.stem not in found:
                found[path.stem] = path
    return list(found.items()), problems


def _provider_row(manifest: Manifest, path: Path) -> dict[str, Any]:
    from .manifest.locate import builtin_dir, same_file

    modes = sorted(manifest.tool_choice_modes if manifest.tools else (),
                   key=lambda m: (_MODE_ORDER.index(m) if m in _MODE_ORDER else 99, m))
    return {"id": manifest.id, "name": manifest.name, "source": str(path),
            "builtin": same_file(path.parent, builtin_dir()), "tools": manifest.tools,
            "stream": manifest.stream, "tool_choice": modes, "models": len(manifest.models)}


def _models(args: argparse.Namespace) -> int:
    from .manifest.load import load_manifest

    manifest = load_manifest(args.provider)
    fields = ("context_window", "max_output", "input_price", "output_price",
              "cached_input_price")
    rows = [(model, [info.get(name) for name in fields], list(info.get("capabilities") or []))
            for model, info in manifest.models.items()]
    if args.json:
        print(json.dumps([{"id": model, **dict(zip(fields, values, strict=True)),
                           "capabilities": caps} for model, values, caps in rows],
                         ensure_ascii=False, indent=2))
    elif not rows:
        print(f"{manifest.id}: the manifest lists no models", file=sys.stderr)
    else:
        _table([[model, *(_count(v) for v in values), ",".join(caps) or "-"]
                for model, values, caps in rows],
               ["MODEL", "CONTEXT", "MAX_OUTPUT", "IN_$/M", "OUT_$/M", "CACHED_$/M",
                "CAPABILITIES"])
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:g}"


def _table(rows: list[list[str]], heads: list[str]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(heads, *rows, strict=True)]
    for row in [heads, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
