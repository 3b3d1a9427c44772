"""Turn a validated, merged manifest mapping into the frozen model. No cerberus.

:func:`compile_manifest` compiles every template, JMESPath expression and
regex once and builds :class:`~engine.manifest.model.Manifest`; structural
problems the schema cannot express (a rule without an action, a scheme
without its header) are reported to a :class:`Problems` collector instead of
raised, so one run reports all of them.

:class:`Problems` is where every problem of one check goes. It keeps each
distinct line once, locates a key in the file of the ``extends`` chain that
decides it (:meth:`~engine.manifest.locate.RawDoc.reach`: the file that writes
the key, else the one that writes most of its path), lists lines in file
order (an item of a named list in the files that write it, a patch by its name:
the resolved chain's ``origins``; shown by its name, ``errors.rules.<name>``), and
reports at most :data:`LIMIT` of them, then one line saying how
many more there were (or, when checking stopped because the report was full,
that there are more). A request body is merged from layers (``chat.body``,
an override's ``body``, ``chat.stream.body``, an override's ``stream_body``:
:func:`body_layers`); a template problem in it is reported at the layer that
wrote the failing key (:func:`owner`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..parts import MEDIA_TYPES
from ..protocol.auth import SIGNING_SCHEME, SOURCED_SCHEMES, TOKEN_SCHEME
from ..retry import RetryPolicy
from .locate import KeyPath, Origins, RawDoc, format_path, named_path, reach
from .merge import deep_merge
from .model import (
    TOOL_CHOICE_MODES,
    USAGE_FIELDS,
    AuthSpec,
    ChatSpec,
    ErrorRule,
    ErrorSpec,
    EventRule,
    HeaderFacts,
    Manifest,
    Matcher,
    PartLimit,
    ReplayRule,
    ResponseSpec,
    RetryHint,
    SettingSpec,
    StreamSpec,
    ToolCallRule,
    Variant,
)
from .operations import compile_count_tokens, compile_embed, compile_list_models
from .paths import Path, PathError, compile_path
from .patterns import Pattern, PatternError, compile_pattern
from .templates import Node, TemplateError, compile_tree, compile_with_roles

__all__ = ["LIMIT", "Layer", "Problems", "body_layers", "compile_manifest", "owner"]

LIMIT = 200  # problems reported per manifest; the rest are counted in one line


class Problems:
    """Collects problems as ``file:line: key.path: message``, located via the chain."""

    def __init__(self, chain: list[RawDoc], limit: int = LIMIT, *,
                 origins: Origins | None = None, lists: tuple[KeyPath, ...] = ()) -> None:
        self.chain = chain
        self.limit = limit
        self.origins: Origins = origins or {}  # where each item of a merged named list is
        self.lists = lists  # the named lists (items shown by name)
        self._entries: list[tuple[int, int, str]] = []  # (file in the chain, line, text)
        self._seen: set[str] = set()
        self.stopped = False  # set when checking stopped early because the report was full

    def add(self, key: KeyPath, message: str) -> None:
        """Record one problem at *key* of the merged manifest, in the file that decides it."""
        self.add_in(*self._locate(key), message)

    def add_in(self, index: int, key: KeyPath, message: str) -> None:
        """Record one problem at *key* of the chain's file *index* (a key as that file
        writes it); each line once. A named list item is shown by its name."""
        doc = self.chain[index] if self.chain else None
        line = (doc.line_of(key) if doc is not None else None) or 1
        shown = format_path(named_path(doc.data, key, self.lists) if doc is not None else key)
        text = f"{doc.path if doc is not None else '?'}:{line}: {shown}: {message}"
        if text not in self._seen:
            self._seen.add(text)
            self._entries.append((index, line, text))

    @property
    def count(self) -> int:
        """How many distinct problems were recorded (reported or not)."""
        return len(self._entries)

    @property
    def full(self) -> bool:
        """Whether no further problem would be reported (checking may stop)."""
        return self.count >= self.limit

    @property
    def unreported(self) -> int:
        """How many recorded problems the report leaves out."""
        return max(0, self.count - self.limit)

    @property
    def problems(self) -> list[str]:
        """The report: at most :attr:`limit` lines in file order, then one line for the rest."""
        ordered = sorted(self._entries, key=lambda entry: entry[:2])
        lines = [text for _, _, text in ordered[:self.limit]]
        where = f"{self.chain[0].path if self.chain else '?'}:1: (top): ..."
        if self.stopped:
            lines.append(f"{where} and more problems not reported: checking stopped after "
                         f"{self.count} (the first {self.limit} are reported)")
        elif self.unreported:
            lines.append(f"{where} and {self.unreported} more problem(s) not reported "
                         f"(the first {self.limit} are)")
        return lines

    def _locate(self, key: KeyPath) -> tuple[int, KeyPath]:
        """(file of the chain, key in that file) that decides merged *key*: for an item of
        a named list, among the files that write that item (a patch by its name)."""
        if not self.chain:
            return 0, key
        for path in self.origins:
            at = len(path)
            items = self.origins.get(path) if key[:at] == path and len(key) > at else None
            step = key[at] if items is not None else None
            if items is not None and isinstance(step, int) and 0 <= step < len(items):
                return self._owner([(i, (*where, *key[at + 1:])) for i, where in items[step]])
        return self._owner([(i, key) for i in range(len(self.chain))])

    def _owner(self, options: list[tuple[int, KeyPath]]) -> tuple[int, KeyPath]:
        """The first (file, key) whose file decides its key, else the one holding most of it."""
        best, depth = options[0], -1
        for index, key in options:
            held, decides = self.chain[index].reach(key)
            if decides:
                return index, key
            if held > depth:
                best, depth = (index, key), held
        return best


Layer = tuple[KeyPath, Any]  # (where a tree is written, the tree)


def owner(layers: Sequence[Layer], path: KeyPath) -> KeyPath:
    """The key of *path* (a path in the merge of *layers*, highest precedence first) in
    the layer that wrote it; else in the layer that writes most of it."""
    best, depth = layers[-1][0], -1
    for prefix, tree in layers:
        held, decides = reach(tree, path)
        if decides:
            return (*prefix, *path)
        if held > depth:
            best, depth = prefix, held
    return (*best, *path)


def body_layers(chat: Mapping[str, Any], index: int | None, stream: bool) -> list[Layer]:
    """The trees a request body merges, highest precedence first: override *index*'s
    (None: the base body only), with the stream ones when *stream*."""
    layers: list[Layer] = [(("chat", "body"), chat.get("body") or {})]
    if index is not None:
        override = chat["overrides"][index]
        layers.insert(0, (("chat", "overrides", index, "body"), override.get("body") or {}))
    if stream:
        layers.insert(0, (("chat", "stream", "body"),
                          (chat.get("stream") or {}).get("body") or {}))
        if index is not None:
            layers.insert(0, (("chat", "overrides", index, "stream_body"),
                              chat["overrides"][index].get("stream_body") or {}))
    return layers


class _Compiler:
    """Builds compiled objects, reporting problems instead of raising."""

    def __init__(self, report: Problems) -> None:
        self.report = report
        self.roles: dict[str, Node] | None = None  # chat.message, for $message

    def role_table(self, table: Mapping[str, Any] | None) -> None:
        if table is None:
            return
        roles: dict[str, Node] = {}
        for role, tree in table.items():
            node = self.tree(tree, ("chat", "message", str(role)))
            if node is not None:
                roles[str(role)] = node
        self.roles = roles

    def path(self, expr: Any, key: KeyPath) -> Path | None:
        if expr is None:
            return None
        try:
            return compile_path(expr)
        except PathError as exc:
            self.report.add(key, str(exc))
            return None

    def tree(self, tree: Any, key: KeyPath, layers: Sequence[Layer] = ()) -> Node | None:
        """Compile *tree*; a failure is reported below *key*, or, for a tree merged
        from *layers*, below the layer that wrote the failing key (:func:`owner`)."""
        try:
            return compile_with_roles(tree, self.roles)
        except TemplateError as exc:
            self.report.add(owner(layers or [(key, tree)], exc.path), str(exc))
            return None

    def regex(self, source: Any, key: KeyPath) -> Pattern | None:
        if source is None:
            return None
        try:
            return compile_pattern(source)
        except PatternError as exc:
            self.report.add(key, str(exc))
            return None

    def usage(self, spec: Mapping[str, Any] | None, key: KeyPath) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for name in USAGE_FIELDS:
            compiled = self.path((spec or {}).get(name), (*key, name))
            if compiled is not None:
                out[name] = compiled
        return out


def compile_manifest(data: Mapping[str, Any], report: Problems) -> Manifest:
    """The compiled manifest for merged, schema-valid *data*; problems go to *report*."""
    c = _Compiler(report)
    chat = data.get("chat")
    auth = _auth(c, data["auth"], report)
    caps = data.get("capabilities") or {}
    spec, stream = _chat(c, chat) if chat is not None else (None, None)
    if spec is not None:
        spec = _model_capabilities(spec, chat or {}, caps, report)
    errors = _errors(c, data.get("errors") or {})
    return Manifest(
        id=data["id"],
        name=data.get("name", data["id"]),
        source=str(report.chain[0].path) if report.chain else "",
        base_url=data["base_url"].rstrip("/"),
        settings=_settings(c, data.get("settings") or {}),
        base_url_template=_base_url_template(c, data),
        base_url_env=tuple(data.get("base_url_env") or ()),
        response_headers=_header_facts(data.get("response_headers") or {}),
        headers=c.tree(data["headers"], ("headers",)) if data.get("headers") else None,
        auth=auth,
        chat=spec,
        embed=compile_embed(c, data.get("embed"), errors),
        list_models=compile_list_models(c, data.get("list_models"), errors),
        count_tokens=compile_count_tokens(c, data.get("count_tokens"), chat, errors),
        finish_reasons=dict(data.get("finish_reasons") or {}),
        errors=errors,
        retry=_retry(data.get("retry") or {}),
        models={k: dict(v or {}) for k, v in (data.get("models") or {}).items()},
        stream=caps.get("stream", stream is not None) and stream is not None,
        stream_errors=_stream_errors(caps, stream, report),
        chat_params=frozenset(_params_named(chat)) if chat is not None else frozenset(),
        **_capability_fields(caps, spec is not None, report, ("capabilities",)),
    )


def _capability_fields(caps: Mapping[str, Any], chat: bool, report: Problems,
                       key: KeyPath, own: frozenset[str] | None = None) -> dict[str, Any]:
    """The :class:`Manifest` fields a capabilities section sets (all but stream framing);
    *own*: the keys an override sets itself (None: the top-level section)."""
    return {
        "tools": caps.get("tools", True) and chat,
        "tool_choice_modes": frozenset(caps.get("tool_choice", TOOL_CHOICE_MODES)),
        "part_sources": _part_sources(caps, report, key),
        "part_limits": _part_limits(caps, report, key),
        "response_formats": frozenset(caps.get("response_format") or ()),
        "response_format_fallback": _fallback(caps, chat, report, key, own),
        "reasoning_controls": frozenset(caps.get("reasoning") or ()),
        "parallel_tool_calls": bool(caps.get("parallel_tool_calls", False)),
        "developer_role": bool(caps.get("developer_role", False)),
        "native_tools": bool(caps.get("native_tools", False)),
        "prompt_cache": caps.get("prompt_cache", "none"),
        "reasoning_excludes": frozenset(caps.get("reasoning_excludes") or ()),
        "reasoning_tool_choice": (frozenset(caps["reasoning_tool_choice"])
                                  if caps.get("reasoning_tool_choice") is not None else None),
    }


def _fallback(caps: Mapping[str, Any], chat: bool, report: Problems, key: KeyPath,
              own: frozenset[str] | None) -> str | None:
    """The fallback; a tool fallback without the forced tool choice is reported where it
    is made (an override that changes none of the three inherits the top level's report)."""
    fallback = caps.get("response_format_fallback")
    made_here = own is None or bool({"response_format_fallback", "tools", "tool_choice"} & own)
    if fallback == "tool" and made_here and not (chat and caps.get("tools", True)
                                   and "tool" in caps.get("tool_choice", TOOL_CHOICE_MODES)):
        report.add((*key, "response_format_fallback"), "tool needs tools and the tool "
                   "choice mode 'tool'")
    return fallback if isinstance(fallback, str) else None


def _model_capabilities(spec: ChatSpec, chat: Mapping[str, Any], caps: Mapping[str, Any],
                        report: Problems) -> ChatSpec:
    """*spec* with each override's capabilities (merged over *caps*) on its variant."""
    variants = list(spec.variants)
    for i, override in enumerate(chat.get("overrides") or []):
        if override.get("capabilities") is None:
            continue
        merged = deep_merge(caps, override["capabilities"])
        fields = _capability_fields(merged, True, report, ("chat", "overrides", i,
                                                           "capabilities"),
                                    frozenset(override["capabilities"]))
        variants[i] = dataclasses.replace(variants[i], capabilities=fields)
    return dataclasses.replace(spec, variants=tuple(variants))


_PARAM_NAME = re.compile(r"\bparams\.([A-Za-z_]\w*)")


def _params_named(tree: Any) -> Iterator[str]:
    """The ``params.<name>`` every template string of *tree* reads."""
    if isinstance(tree, str):
        yield from _PARAM_NAME.findall(tree)
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _params_named(key)
            yield from _params_named(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _params_named(item)


def _chat(c: _Compiler, chat: Mapping[str, Any]) -> tuple[ChatSpec, StreamSpec | None]:
    c.role_table(chat.get("message"))
    response = _response(c, chat["response"])
    stream = _stream(c, chat.get("stream"))
    stream_body = (chat.get("stream") or {}).get("body") or {} if stream is not None else None
    variants = _variants(c, chat, stream_body)
    spec = ChatSpec(
        method=chat.get("method", "POST"),
        path=c.tree(chat["path"], ("chat", "path")) or compile_tree({}),
        query=c.tree(chat["query"], ("chat", "query")) if "query" in chat else None,
        response=response,
        stream=stream,
        variants=variants,
    )
    return spec, stream


def _settings(c: _Compiler, spec: Mapping[str, Any]) -> dict[str, SettingSpec]:
    out = {}
    for name, item in spec.items():
        item = item or {}
        key = ("settings", name)
        pattern = None
        if "pattern" in item:
            try:
                pattern = compile_pattern(rf"\A(?:{item['pattern']})\Z")
            except PatternError as exc:
                c.report.add((*key, "pattern"), str(exc))
        if pattern is not None and "default" in item and not pattern.search(item["default"]):
            c.report.add((*key, "default"), f"{item['default']!r} does not match the "
                         f"setting's own pattern")
        example = item.get("example")
        if pattern is not None and example is not None and not pattern.search(example):
            c.report.add((*key, "example"), f"{example!r} does not match the setting's "
                         f"own pattern")
        if item.get("required") and "default" in item:
            c.report.add((*key, "required"), "a setting with a default is never missing; "
                         "drop 'required' or the default")
        out[name] = SettingSpec(name=name, env=tuple(item.get("env") or ()),
                                default=item.get("default"),
                                required=bool(item.get("required", False)), pattern=pattern,
                                description=item.get("description", ""),
                                example=example)
    return out


def _base_url_template(c: _Compiler, data: Mapping[str, Any]) -> Node | None:
    """The base URL as a template when it reads settings (``{{ settings.x }}``)."""
    url = data["base_url"]
    if "{{" not in url:
        return None
    return c.tree(url.rstrip("/"), ("base_url",))


def _part_sources(caps: Mapping[str, Any], report: Problems,
                  key: KeyPath) -> dict[str, frozenset[str]]:
    sources = {k: frozenset(v) for k, v in (caps.get("parts") or {}).items()}
    for kind, taken in sources.items():
        if "fetch" in taken and ("url" in taken or "data" not in taken):
            report.add((*key, "parts", kind), "fetch sends a downloaded URL as "
                       "data: it needs data and excludes url")
    return sources


def _part_limits(caps: Mapping[str, Any], report: Problems,
                 key: KeyPath) -> dict[str, PartLimit]:
    limits = {}
    for kind, spec in (caps.get("part_limits") or {}).items():
        types = spec.get("media_types")
        unknown = sorted(set(types or ()) - MEDIA_TYPES[kind])
        if unknown:
            report.add((*key, "part_limits", kind, "media_types"),
                       f"not {kind} media types the engine knows: {', '.join(unknown)} "
                       f"(known: {', '.join(sorted(MEDIA_TYPES[kind]))})")
        if kind not in (caps.get("parts") or {}):
            report.add((*key, "part_limits", kind),
                       f"limits for {kind} parts, which capabilities.parts does not take")
        limits[kind] = PartLimit(spec.get("max_bytes"),
                                 frozenset(types) if types is not None else None)
    return limits


def _stream_errors(caps: Mapping[str, Any], stream: StreamSpec | None,
                   report: Problems) -> bool:
    """Whether the provider reports errors inside a stream (it has an error rule)."""
    has_rule = stream is not None and any(r.error is not None for r in stream.events)
    declared = caps.get("stream_errors")
    if declared is True and not has_rule:
        report.add(("capabilities", "stream_errors"), "true, but no chat.stream event rule "
                   "has an 'error' action")
    if declared is False and has_rule:
        report.add(("capabilities", "stream_errors"), "false, but a chat.stream event rule "
                   "has an 'error' action")
    return has_rule if declared is None else bool(declared)


def _names(value: str | list[str] | None) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value or []
    return tuple(name.lower() for name in names)


def _header_facts(spec: Mapping[str, Any]) -> HeaderFacts:
    limits = spec.get("rate_limit") or {}
    return HeaderFacts(request_id=_names(spec.get("request_id")),
                       rate_limit={name: _names(value) for name, value in limits.items()})


def _own_host_child(report: Problems) -> bool:
    """The manifest extends another and sets its own base_url (see source._origin_bound)."""
    return len(report.chain) > 1 and "base_url" in report.chain[0].data


def _auth(c: _Compiler, spec: Mapping[str, Any], report: Problems) -> AuthSpec:
    scheme = spec["scheme"]
    if scheme == "header" and not spec.get("header"):
        report.add(("auth", "scheme"), "scheme 'header' needs auth.header")
    if scheme == "query" and not spec.get("param"):
        report.add(("auth", "scheme"), "scheme 'query' needs auth.param")
    if scheme not in ("none", *SOURCED_SCHEMES) and not spec.get("env"):
        if _own_host_child(report):
            report.add_in(0, ("base_url",), "a manifest with its own base_url inherits no "
                          "auth.env (a key variable belongs to its host): name this "
                          "provider's own key variable in auth.env")
        else:
            report.add(("auth",), "auth.env must list at least one environment variable")
    for name, allowed in (("header", {"header"}), ("param", {"query"}),
                          ("prefix", {"header"}), ("command", {TOKEN_SCHEME}),
                          ("lifetime", {TOKEN_SCHEME}), ("credentials", {TOKEN_SCHEME}),
                          ("scopes", {TOKEN_SCHEME}), ("library", {TOKEN_SCHEME}),
                          ("extra", {TOKEN_SCHEME}), ("service", {SIGNING_SCHEME}),
                          ("region", {SIGNING_SCHEME})):
        if name in spec and scheme not in allowed:
            report.add(("auth", name), f"not used by scheme {scheme!r}")
    needs = {SIGNING_SCHEME: ("service", "region")}
    for name in needs.get(scheme, ()):
        if name not in spec:
            report.add(("auth", "scheme"), f"scheme {scheme!r} needs auth.{name}")
    if scheme == TOKEN_SCHEME and ("command" in spec) == ("credentials" in spec):
        report.add(("auth", "scheme"), f"scheme {scheme!r} needs auth.command or "
                   f"auth.credentials (one of them)")
    if ("credentials" in spec) != ("library" in spec):
        report.add(("auth", "library"), "auth.credentials needs auth.library, and "
                   "auth.library needs auth.credentials")
    if "scopes" in spec and "credentials" not in spec:
        report.add(("auth", "scopes"), "scopes go with auth.credentials")
    region = spec.get("region")
    return AuthSpec(
        scheme=scheme,
        header=spec.get("header"),
        prefix=spec.get("prefix", ""),
        param=spec.get("param"),
        env=tuple(spec.get("env") or ()),
        required=spec.get("required", scheme != "none"),
        command=tuple(spec.get("command") or ()),
        lifetime=float(spec.get("lifetime", 3000.0)),
        credentials=spec.get("credentials"),
        scopes=tuple(spec.get("scopes") or ()),
        library=spec.get("library"),
        extra=spec.get("extra"),
        service=spec.get("service"),
        region=c.tree(region, ("auth", "region")) if region is not None else None,
    )


def _response(c: _Compiler, spec: Mapping[str, Any]) -> ResponseSpec:
    key = ("chat", "response")
    return ResponseSpec(
        content=c.path(spec.get("content"), (*key, "content")),
        thinking=c.path(spec.get("thinking"), (*key, "thinking")),
        tool_calls=c.path(spec.get("tool_calls"), (*key, "tool_calls")),
        finish_reason=c.path(spec.get("finish_reason"), (*key, "finish_reason")),
        usage=c.usage(spec.get("usage"), (*key, "usage")),
        error=c.path(spec.get("error"), (*key, "error")),
        replay=c.path(spec.get("replay"), (*key, "replay")),
    )


def _matcher(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> Matcher:
    events = spec.get("event")
    if isinstance(events, str):
        events = [events]
    return Matcher(
        events=frozenset(events) if events else None,
        data=spec.get("data"),
        when=c.path(spec.get("when"), (*key, "when")),
    )


def _event_rule(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> EventRule:
    actions = {"content", "thinking", "tool_call", "tool_call_end", "finish_reason",
               "usage", "error", "end", "replay"}
    if not actions & set(spec):
        c.report.add(key, "an event rule needs at least one action "
                          f"({', '.join(sorted(actions))})")
    if not {"event", "data", "when"} & set(spec):
        c.report.add(key, "an event rule needs a condition (event, data or when)")
    tool = spec.get("tool_call")
    error = spec.get("error")
    end_key = (spec.get("tool_call_end") or {}).get("key")
    return EventRule(
        match=_matcher(c, spec, key),
        content=c.path(spec.get("content"), (*key, "content")),
        thinking=c.path(spec.get("thinking"), (*key, "thinking")),
        tool_call=_tool_rule(c, tool, (*key, "tool_call")) if tool else None,
        tool_call_end=c.path(end_key, (*key, "tool_call_end", "key")),
        finish_reason=c.path(spec.get("finish_reason"), (*key, "finish_reason")),
        usage=c.usage(spec.get("usage"), (*key, "usage")),
        error={name: p for name, expr in (error or {}).items()
               if (p := c.path(expr, (*key, "error", name))) is not None}
        if error is not None else None,
        end=bool(spec.get("end", False)),
        replay=_replay_rule(c, spec["replay"], (*key, "replay")) if "replay" in spec else None,
    )


def _replay_rule(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> ReplayRule:
    if not spec:
        c.report.add(key, "a replay rule needs items, or start/append/append_json/push")

    def fields(name: str) -> tuple[tuple[tuple[str, ...], Path], ...]:
        return tuple((tuple(field.split(".")), p)
                     for field, expr in (spec.get(name) or {}).items()
                     if (p := c.path(expr, (*key, name, field))) is not None)

    if set(spec) == {"key"}:
        c.report.add(key, "a replay rule with only a key does nothing; add start, append, "
                          "append_json or push")
    return ReplayRule(
        items=c.path(spec.get("items"), (*key, "items")),
        key=c.path(spec.get("key"), (*key, "key")),
        start=c.path(spec.get("start"), (*key, "start")),
        append=fields("append"), append_json=fields("append_json"), push=fields("push"),
    )


def _tool_rule(c: _Compiler, spec: Mapping[str, Any], key: KeyPath) -> ToolCallRule:
    complete = bool(spec.get("complete", False))
    if not complete and "key" not in spec and "id" not in spec:
        c.report.add(key, "a fragment tool_call rule needs 'key' or 'id' "
                          "(or complete: true for whole calls)")
    if complete and spec.get("continues"):
        c.report.add((*key, "continues"), "a complete call starts itself; drop 'continues'")
    if complete and "name" not in spec:
        c.report.add(key, "a complete tool_call rule needs 'name'")
    return ToolCallRule(
        key=c.path(spec.get("key"), (*key, "key")),
        id=c.path(spec.get("id"), (*key, "id")),
        name=c.path(spec.get("name"), (*key, "name")),
        arguments=c.path(spec.get("arguments"), (*key, "arguments")),
        each=c.path(spec.get("each"), (*key, "each")),
        complete=complete,
        continues=bool(spec.get("continues", False)),
        extra={name: p for name, expr in (spec.get("extra") or {}).items()
               if (p := c.path(expr, (*key, "extra", name))) is not None},
    )


def _stream(c: _Compiler, spec: Mapping[str, Any] | None) -> StreamSpec | None:
    if spec is None:
        return None
    key: KeyPath = ("chat", "stream")
    if "framing" not in spec:
        c.report.add(key, "stream needs 'framing'")
    if not spec.get("events"):
        c.report.add(key, "stream needs at least one rule in 'events'")
    if not spec.get("end") and not spec.get("eof_ok") and not any(
            r.get("end") for r in spec.get("events") or []):
        c.report.add(key, "stream needs an end condition ('end', an event with end: true, "
                          "or eof_ok: true)")
    return StreamSpec(
        path=c.tree(spec["path"], (*key, "path")) if "path" in spec else None,
        query=c.tree(spec["query"], (*key, "query")) if "query" in spec else None,
        headers=c.tree(spec["headers"], (*key, "headers")) if spec.get("headers") else None,
        framing=spec.get("framing", "sse"),
        end=tuple(_matcher(c, m, (*key, "end", i)) for i, m in enumerate(spec.get("end") or [])),
        eof_ok=bool(spec.get("eof_ok", False)),
        ignore=tuple(_matcher(c, m, (*key, "ignore", i))
                     for i, m in enumerate(spec.get("ignore") or [])),
        events=tuple(_event_rule(c, r, (*key, "events", i))
                     for i, r in enumerate(spec.get("events") or [])),
    )


def _variants(c: _Compiler, chat: Mapping[str, Any], stream_body: Any) -> tuple[
        Variant, ...]:
    base_body = chat["body"] or {}
    out: list[Variant] = []
    for i, override in enumerate(chat.get("overrides") or []):
        key: KeyPath = ("chat", "overrides", i)
        body = deep_merge(base_body, override.get("body") or {})
        stream_extra = deep_merge(stream_body or {}, override.get("stream_body") or {})
        if "stream_body" in override and stream_body is None:
            c.report.add((*key, "stream_body"), "the manifest has no chat.stream section")
        out.append(_variant(c, c.regex(override["match"], (*key, "match")), body,
                            stream_extra if stream_body is not None else None, chat, i))
    out.append(_variant(c, None, base_body, stream_body, chat, None))
    return tuple(out)


def _variant(c: _Compiler, pattern: Pattern | None, body: Any, stream_body: Any,
             chat: Mapping[str, Any], index: int | None) -> Variant:
    empty = compile_tree({})
    compiled = c.tree(body, (), body_layers(chat, index, False)) or empty
    streamed = None
    if stream_body is not None:
        streamed = c.tree(deep_merge(body, stream_body), (),
                          body_layers(chat, index, True)) or empty
    return Variant(pattern, compiled, streamed)


RULE_CONDITIONS = ("status", "code", "type", "message_matches", "headers")
RULE_OUTCOMES = ("kind", "retryable", "retry")


def _errors(c: _Compiler, spec: Mapping[str, Any], key: KeyPath = ("errors",)) -> ErrorSpec:
    rules = [_error_rule(c, rule, (*key, "rules", i))
             for i, rule in enumerate(spec.get("rules") or [])]
    hints = []
    for i, hint in enumerate(spec.get("retry_after") or []):
        hkey = (*key, "retry_after", i)
        if not {"header", "path", "message_matches"} & set(hint):
            c.report.add(hkey, "a retry hint needs one of header, path, message_matches")
        hints.append(RetryHint(
            header=hint.get("header"),
            path=c.path(hint.get("path"), (*hkey, "path")),
            message=c.regex(hint.get("message_matches"), (*hkey, "message_matches")),
            unit=hint.get("unit", "auto"),
        ))
    return ErrorSpec(
        message=c.path(spec.get("message"), (*key, "message")),
        code=c.path(spec.get("code"), (*key, "code")),
        type=c.path(spec.get("type"), (*key, "type")),
        rules=tuple(rules),
        retry_after=tuple(hints),
    )


def _error_rule(c: _Compiler, rule: Mapping[str, Any], key: KeyPath) -> ErrorRule:
    if not set(RULE_CONDITIONS) & set(rule):
        c.report.add(key, f"a rule needs a condition ({', '.join(RULE_CONDITIONS)})")
    if not set(RULE_OUTCOMES) & set(rule):
        c.report.add(key, f"a rule needs an outcome ({', '.join(RULE_OUTCOMES)})")
    headers = []
    for name, pattern in (rule.get("headers") or {}).items():
        compiled = c.regex(pattern, (*key, "headers", name))
        if compiled is not None:
            headers.append((str(name).lower(), compiled))
    retry = rule.get("retry")
    return ErrorRule(
        kind=rule.get("kind"),
        status=_set(rule.get("status"), int),
        codes=_set(rule.get("code"), str),
        types=_set(rule.get("type"), str),
        message=c.regex(rule.get("message_matches"), (*key, "message_matches")),
        headers=tuple(headers),
        retryable=rule.get("retryable"),
        retry=None if retry is None else retry == "always",
    )


def _set(value: Any, conv: type) -> frozenset[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return frozenset(conv(v) for v in items)


def _retry(spec: Mapping[str, Any]) -> RetryPolicy:
    default = RetryPolicy()
    return RetryPolicy(
        max_retries=spec.get("max_retries", default.max_retries),
        retry_on=frozenset(spec["retry_on"]) if "retry_on" in spec else default.retry_on,
        backoff_base=float(spec.get("backoff_base", default.backoff_base)),
        backoff_max=float(spec.get("backoff_max", default.backoff_max)),
        honor_retry_after=spec.get("honor_retry_after", default.honor_retry_after),
        max_retry_after=float(spec.get("max_retry_after", default.max_retry_after)),
    )


