"""Render a normalized request of any operation into a :class:`PreparedRequest`.

Pure: no I/O. The manifest's compiled templates receive a context of plain
data (model, messages, system, params, tools, tool_choice, stream,
model_info, settings) and produce the URL, headers and JSON body. Auth is applied by a
scheme from :data:`AUTH_SCHEMES`. The body is serialized with ``json.dumps``
from the rendered structure, so it is valid JSON whatever the text contains.

Every operation goes through the same assembly (:func:`_assemble`: manifest
headers, per-call headers, auth, URL and query). ``embed`` templates also see
``inputs`` (the texts of one request), ``dimensions`` and ``input_type`` (the
provider's word, from ``embed.input_types``); ``list_models`` ones see
``cursor`` (None on the first page); ``count_tokens`` renders the chat
context. A request the manifest cannot express is refused here, before
anything is sent.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import EngineError, ManifestError, redact
from ..manifest.merge import deep_merge
from ..manifest.model import ChatSpec, EmbedSpec, Endpoint, Manifest
from ..manifest.templates import Node, render_checked
from ..parts import Part
from ..types import ChatRequest, EmbedRequest
from .auth import AUTH_SCHEMES, SIGNING_SCHEME
from .structured import emulated

__all__ = [
    "PARAMS",
    "PreparedRequest",
    "build_context",
    "check_capabilities",
    "check_embed",
    "lacks_operation",
    "normalize_tool_choice",
    "operation_context",
    "prepare",
    "prepare_count_tokens",
    "prepare_embed",
    "prepare_list_models",
]

PARAMS = ("temperature", "max_tokens", "top_p", "top_k", "stop", "seed")
USER_AGENT = "engine/0.1 (+python)"


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """Everything the transport needs; plain data, safe to log via :meth:`describe`."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    json: Any
    stream: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def describe(self) -> str:
        """``METHOD url`` with every secret removed (for logs)."""
        return redact(f"{self.method} {self.url}")

    def __repr__(self) -> str:
        return f"PreparedRequest({self.describe()!r}, stream={self.stream})"


# ---------------------------------------------------------------- context

def normalize_tool_choice(choice: Any) -> dict[str, Any] | None:
    """``"auto" | "none" | "required" | {"name": ...}`` -> ``{"mode", "name"}``."""
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return {"mode": choice, "name": None}
        return {"mode": "tool", "name": choice}
    if isinstance(choice, Mapping):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"mode": "tool", "name": name}
    raise EngineError("invalid_request", "tool_choice must be 'auto', 'none', 'required', "
                      "a tool name, or {'name': tool_name}")


def build_context(request: ChatRequest, model: str, manifest: Manifest,
                  stream: bool, settings: Mapping[str, str | None] | None = None
                  ) -> dict[str, Any]:
    """The plain-data context every template of the manifest sees."""
    messages = [m.to_context() for m in request.messages]
    names = {tc.id: tc.name for m in request.messages for tc in m.tool_calls}
    own = manifest.developer_role
    for message, msg in zip(request.messages, messages, strict=True):
        if msg["role"] == "tool" and not msg["name"]:
            msg["name"] = names.get(msg["tool_call_id"] or "")
        elif msg["role"] == "developer" and not own:
            msg["role"] = "system"
        if msg["replay"] and message.replay_provider != manifest.id:
            msg["replay"] = []  # opaque to every other provider
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    tools = [t.to_context() for t in request.tools] if request.tools else None
    if tools and request.cache_tools:
        tools[-1]["cache"] = True
    cache = {"system": any(m.cache for m in request.messages if m.role == "system"
                           or (m.role == "developer" and not own)),
             "tools": bool(tools and request.cache_tools)}
    return {
        "model": model,
        "messages": messages,
        "system": system or None,
        "params": {name: request.params.get(name) for name in PARAMS},
        "tools": tools,
        "tool_choice": normalize_tool_choice(request.tool_choice),
        "stream": stream,
        "model_info": manifest.model_info(model),
        "settings": dict(settings) if settings is not None else _unset(manifest),
        "response_format": request.response_format,
        "reasoning": request.reasoning,
        "parallel_tool_calls": request.parallel_tool_calls,
        "cache": cache,
    }


def _unset(manifest: Manifest) -> dict[str, None]:
    return dict.fromkeys(manifest.settings)


# ---------------------------------------------------------------- prepare

def _render(node: Node | None, ctx: Mapping[str, Any], what: str, provider: str) -> Any:
    return render_checked(node, ctx, what, provider) if node is not None else None


def _strings(value: Any, what: str, provider: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ManifestError(f"{what} must render to a mapping", provider=provider)
    out = {}
    for key, item in value.items():
        if item is None:
            continue
        out[str(key)] = item if isinstance(item, str) else json.dumps(item)
    return out


def check_capabilities(manifest: Manifest, request: ChatRequest, stream: bool,
                       pending: bool = False, model: str | None = None) -> None:
    """Refuse, before sending, what the manifest declares it cannot do (for *model*,
    when given: an override may give its models capabilities of their own).

    *pending*: the URL parts it takes as ``fetch`` are still to be downloaded
    (and accepted); else such a URL is refused, as it must be bytes by now.
    """
    if model is None:
        return _check_all(manifest, request, stream, pending)
    own = manifest.for_model(model)
    try:
        _check_all(own, request, stream, pending)
    except EngineError as error:
        if own is manifest:  # the model has the manifest's own capabilities
            raise
        raise EngineError(error.kind, f"{error.message} (model {model}: {manifest.id}'s "
                          f"capabilities differ by model)", provider=manifest.id,
                          retryable=False) from None


def _check_all(manifest: Manifest, request: ChatRequest, stream: bool, pending: bool) -> None:
    if request.tools and not manifest.tools:
        raise EngineError("invalid_request", f"{manifest.id} does not support tools",
                          provider=manifest.id, retryable=False)
    choice = normalize_tool_choice(request.tool_choice)
    if choice is not None and choice["mode"] not in manifest.tool_choice_modes:
        allowed = ", ".join(sorted(manifest.tool_choice_modes)) or "none at all"
        raise EngineError("invalid_request", f"{manifest.id} does not support tool_choice "
                          f"{choice['mode']!r} (supported: {allowed})", provider=manifest.id,
                          retryable=False)
    _check_parts(manifest, request, pending)
    _check_reasoning(manifest, request)
    _check_params(manifest, request)
    _check_native_tools(manifest, request)
    _check_cache(manifest, request)
    if request.parallel_tool_calls is False and not manifest.parallel_tool_calls:
        raise EngineError("invalid_request", f"{manifest.id} cannot turn parallel tool calls "
                          f"off", provider=manifest.id, retryable=False)
    fmt = request.response_format
    if (fmt is not None and fmt["type"] not in manifest.response_formats
            and manifest.response_format_fallback is None):
        offered = ", ".join(sorted(manifest.response_formats)) or "neither"
        raise EngineError("invalid_request", f"{manifest.id} cannot ask for a "
                          f"{fmt['type']} answer (it offers: {offered})",
                          provider=manifest.id, retryable=False)
    if stream and not manifest.stream:
        raise EngineError("invalid_request", f"{manifest.id} does not support streaming",
                          provider=manifest.id, retryable=False)


def _check_params(manifest: Manifest, request: ChatRequest) -> None:
    for name, value in request.params.items():
        if value is not None and name not in manifest.chat_params:
            raise EngineError("invalid_request", f"{manifest.id} does not take {name} (its "
                              f"manifest sends no such parameter); drop .{name}()",
                              provider=manifest.id, retryable=False)


def _check_native_tools(manifest: Manifest, request: ChatRequest) -> None:
    if manifest.native_tools:
        return
    for tool in request.tools or ():
        if tool.native is not None:
            raise EngineError("invalid_request", f"{manifest.id} takes no provider tool "
                              f"entries such as {tool.name!r}; give functions only",
                              provider=manifest.id, retryable=False)


def _check_cache(manifest: Manifest, request: ChatRequest) -> None:
    if manifest.prompt_cache != "none":
        return  # "marks": the templates render them; "automatic": the provider caches
    marked = request.cache_tools or any(
        m.cache or any(p.cache for p in m.parts) for m in request.messages)
    if marked:
        raise EngineError("invalid_request", f"{manifest.id} has no prompt caching to mark; "
                          "drop .cache() and cache=True", provider=manifest.id,
                          retryable=False)


def _check_reasoning(manifest: Manifest, request: ChatRequest) -> None:
    wanted = request.reasoning
    if wanted is None:
        return
    pid = manifest.id
    for control in ("effort", "budget_tokens", "adaptive", "summary"):
        if wanted.get(control) not in (None, False) and control not in manifest.reasoning_controls:
            offered = ", ".join(sorted(manifest.reasoning_controls)) or "none"
            raise EngineError("invalid_request", f"{pid} cannot express the reasoning control "
                              f"{control!r} (it offers: {offered})", provider=pid,
                              retryable=False)
    for param in sorted(manifest.reasoning_excludes):
        if request.params.get(param) is not None:
            raise EngineError("invalid_request", f"{pid} refuses {param} alongside "
                              f"reasoning; drop .{param}() or .reasoning()", provider=pid,
                              retryable=False)
    _check_reasoning_tool_choice(manifest, request)


def _check_reasoning_tool_choice(manifest: Manifest, request: ChatRequest) -> None:
    allowed = manifest.reasoning_tool_choice
    if allowed is None:
        return
    pid, taken = manifest.id, ", ".join(sorted(allowed)) or "none at all"
    choice = normalize_tool_choice(request.tool_choice)
    if choice is not None and choice["mode"] not in allowed:
        raise EngineError("invalid_request", f"{pid} refuses tool_choice {choice['mode']!r} "
                          f"alongside reasoning (it takes: {taken}); drop one of them",
                          provider=pid, retryable=False)


def _check_parts(manifest: Manifest, request: ChatRequest, pending: bool) -> None:
    """Refuse parts the manifest cannot send (a URL it downloads only while *pending*)."""
    for message in request.messages:
        for part in message.parts:
            if part.type == "text":
                continue
            taken = manifest.part_sources.get(part.type, frozenset())
            if part.url is None:
                _check_limits(manifest, part)
                source = "data"
            elif "fetch" in taken:  # the plan downloads it, then renders bytes
                source = "fetch" if pending else "url"
            else:
                source = "url"
            if source not in taken:
                _refuse_part(manifest, part, source, taken)


def _refuse_part(manifest: Manifest, part: Part, source: str, taken: frozenset[str]) -> None:
    if source == "url" and "fetch" in taken:
        raise EngineError("invalid_request", f"{manifest.id} takes {part.type} parts as "
                          f"bytes: a URL must be downloaded first (the client does so)",
                          provider=manifest.id, retryable=False)
    shown = sorted("url" if s == "fetch" else s for s in taken)
    how = (f"it takes {part.type} parts as {' or '.join(shown)} only"
           if taken else f"it takes no {part.type} parts")
    article = "an" if part.type[0] in "aeiou" else "a"
    raise EngineError("invalid_request", f"{manifest.id} cannot send {article} {part.type} part "
                      f"given as {source}: {how}", provider=manifest.id, retryable=False)


def _check_limits(manifest: Manifest, part: Part) -> None:
    limit = manifest.part_limits.get(part.type)
    if limit is None or part.data is None:
        return
    if limit.max_bytes is not None and len(part.data) > limit.max_bytes:
        raise EngineError("invalid_request", f"{manifest.id} takes {part.type} parts of at "
                          f"most {limit.max_bytes} bytes; this one has {len(part.data)}",
                          provider=manifest.id, retryable=False)
    if limit.media_types is not None and part.media_type not in limit.media_types:
        raise EngineError("invalid_request", f"{manifest.id} takes {part.type} parts as "
                          f"{', '.join(sorted(limit.media_types))} only, not "
                          f"{part.media_type}", provider=manifest.id, retryable=False)


def _chat_spec(manifest: Manifest) -> ChatSpec:
    if manifest.chat is None:
        raise lacks_operation(manifest, "chat")
    return manifest.chat


def lacks_operation(manifest: Manifest, operation: str) -> EngineError:
    """The refusal of an operation the manifest does not describe."""
    has = ", ".join(manifest.operations) or "none"
    return EngineError("invalid_request", f"{manifest.id} has no {operation} operation "
                       f"(its manifest describes: {has})", provider=manifest.id,
                       retryable=False)


def prepare(manifest: Manifest, request: ChatRequest, model: str, *, api_key: str | None,
            base_url: str | None = None, stream: bool = False,
            settings: Mapping[str, str | None] | None = None) -> PreparedRequest:
    """Render the chat request for *manifest*; raise EngineError on any problem."""
    chat = _chat_spec(manifest)
    request = emulated(request, manifest.for_model(model))
    check_capabilities(manifest, request, stream, model=model)
    manifest = manifest.for_model(model)
    pid = manifest.id
    ctx = build_context(request, model, manifest, stream, settings)
    variant = chat.variant_for(model)
    spec = chat.stream if stream else None
    body_node = variant.stream_body if stream and variant.stream_body else variant.body
    body = render_checked(body_node, ctx, "chat.body", pid)
    if request.extra:
        body = deep_merge(body, dict(request.extra))
    path_node = spec.path if spec is not None and spec.path is not None else chat.path
    path = str(render_checked(path_node, ctx, "chat.path", pid))
    query = _strings(_render(chat.query, ctx, "chat.query", pid), "chat.query", pid)
    extra: dict[str, str] = {}
    if spec is not None and spec.query is not None:
        query.update(_strings(_render(spec.query, ctx, "chat.stream.query", pid),
                              "chat.stream.query", pid))
    if spec is not None and spec.headers is not None:
        extra = _strings(_render(spec.headers, ctx, "chat.stream.headers", pid), "headers", pid)
    return _assemble(manifest, Endpoint(chat.method, chat.path, None), path, query, body, ctx,
                     api_key=api_key, base_url=base_url, given=request.headers,
                     stream=stream, extra_headers=extra)


def _assemble(manifest: Manifest, endpoint: Endpoint, path: str, query: dict[str, str],
              body: Any, ctx: Mapping[str, Any], *, api_key: str | None,
              base_url: str | None, given: Mapping[str, str], stream: bool = False,
              extra_headers: Mapping[str, str] | None = None) -> PreparedRequest:
    """The request of any operation from its rendered path, query and body (None: no
    body), with the manifest's headers, the per-call *given* ones and the auth."""
    pid = manifest.id
    headers = {"content-type": "application/json"} if body is not None else {}
    headers["user-agent"] = USER_AGENT
    headers.update({k.lower(): v for k, v in _strings(
        _render(manifest.headers, ctx, "headers", pid), "headers", pid).items()})
    headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
    auth_headers: dict[str, str] = {}
    secrets = _apply_auth(manifest, api_key, auth_headers, query)
    headers.update(_user_headers(given, auth_headers, pid))
    headers.update(auth_headers)
    url = (base_url or manifest.base_url).rstrip("/") + "/" + path.lstrip("/")
    if query:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
    if body is None:
        return PreparedRequest(endpoint.method, url, tuple(headers.items()), b"", None,
                               stream, secrets)
    try:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise EngineError("invalid_request", f"request body is not JSON: {exc}",
                          provider=pid) from None
    return PreparedRequest(endpoint.method, url, tuple(headers.items()), raw.encode("utf-8"),
                           body, stream, secrets)


# ---------------------------------------------------------------- other operations

_NO_MESSAGES = ChatRequest(messages=())


def _operation(manifest: Manifest, endpoint: Endpoint, op: str, ctx: Mapping[str, Any],
               body: Any, *, api_key: str | None, base_url: str | None,
               given: Mapping[str, str]) -> PreparedRequest:
    pid = manifest.id
    path = str(render_checked(endpoint.path, ctx, f"{op}.path", pid))
    query = _strings(_render(endpoint.query, ctx, f"{op}.query", pid), f"{op}.query", pid)
    return _assemble(manifest, endpoint, path, query, body, ctx, api_key=api_key,
                     base_url=base_url, given=given)


def operation_context(manifest: Manifest, model: str,
                      settings: Mapping[str, str | None] | None, **values: Any
                      ) -> dict[str, Any]:
    """The context of an operation's templates: a chat context without messages (so the
    manifest's headers render as they do for chat), plus the operation's own values."""
    ctx = build_context(_NO_MESSAGES, model, manifest, False, settings)
    ctx.update(values)
    return ctx


def check_embed(manifest: Manifest, request: EmbedRequest) -> EmbedSpec:
    """The manifest's embed spec, after refusing what it cannot send."""
    spec = manifest.embed
    if spec is None:
        raise lacks_operation(manifest, "embed")
    pid = manifest.id

    def refuse(message: str) -> EngineError:
        return EngineError("invalid_request", message, provider=pid, retryable=False)

    if request.dimensions is not None and not spec.dimensions:
        raise refuse(f"{pid} cannot set the embedding dimensions (its manifest does not "
                     f"send them); leave dimensions unset")
    if request.input_type is not None and request.input_type not in spec.input_types:
        taken = ", ".join(spec.input_types)
        how = f"it takes {taken}" if taken else "its embeddings take no input type"
        raise refuse(f"{pid} cannot send input_type={request.input_type!r}: {how}")
    if not spec.allow_empty:
        empty = next((i for i, text in enumerate(request.inputs) if not text.strip()), None)
        if empty is not None:
            raise refuse(f"input {empty} is empty: {pid} refuses empty texts")
    return spec


def prepare_embed(manifest: Manifest, request: EmbedRequest, inputs: Sequence[str],
                  model: str, *, api_key: str | None, base_url: str | None = None,
                  settings: Mapping[str, str | None] | None = None) -> PreparedRequest:
    """The request embedding *inputs* (one batch of *request*)."""
    spec = check_embed(manifest, request)
    input_type = (spec.input_types[request.input_type]
                  if request.input_type is not None else None)
    ctx = operation_context(manifest, model, settings, inputs=list(inputs),
                            dimensions=request.dimensions, input_type=input_type)
    body = render_checked(spec.body, ctx, "embed.body", manifest.id)
    return _operation(manifest, spec.endpoint, "embed", ctx, body, api_key=api_key,
                      base_url=base_url, given=request.headers)


def prepare_list_models(manifest: Manifest, model: str, cursor: str | None, *,
                        api_key: str | None, base_url: str | None = None,
                        settings: Mapping[str, str | None] | None = None) -> PreparedRequest:
    """The request of one page of the model list (*cursor*: None for the first)."""
    spec = manifest.list_models
    if spec is None:
        raise lacks_operation(manifest, "list_models")
    ctx = operation_context(manifest, model, settings, cursor=cursor)
    return _operation(manifest, spec.endpoint, "list_models", ctx, None, api_key=api_key,
                      base_url=base_url, given={})


def prepare_count_tokens(manifest: Manifest, request: ChatRequest, model: str, *,
                         api_key: str | None, base_url: str | None = None,
                         settings: Mapping[str, str | None] | None = None
                         ) -> PreparedRequest:
    """The chat request rendered for the provider's token counter."""
    spec = manifest.count_tokens
    if spec is None:
        raise lacks_operation(manifest, "count_tokens")
    request = emulated(request, manifest.for_model(model))
    check_capabilities(manifest, request, False, model=model)
    manifest = manifest.for_model(model)
    ctx = build_context(request, model, manifest, False, settings)
    body = render_checked(spec.variant_for(model).body, ctx, "count_tokens.body", manifest.id)
    return _operation(manifest, spec.endpoint, "count_tokens", ctx, body, api_key=api_key,
                      base_url=base_url, given=request.headers)


# Headers the HTTP layer owns: a per-call value would corrupt the framing of the request.
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def _user_headers(given: Mapping[str, str], auth: Mapping[str, str],
                  provider: str) -> dict[str, str]:
    """Per-call headers, lower-cased; they may override the manifest's but never the auth."""
    out: dict[str, str] = {}
    for name, value in given.items():
        key = name.lower()
        if key in auth:
            raise EngineError("invalid_request", f"header {name!r} carries the credentials of "
                              f"{provider}; pass the key as api_key= instead of a header",
                              provider=provider, retryable=False)
        if key in _TRANSPORT_HEADERS:
            raise EngineError("invalid_request", f"header {name!r} is set by the HTTP layer "
                              f"and cannot be given per call", provider=provider,
                              retryable=False)
        out[key] = value
    return out


def _apply_auth(manifest: Manifest, api_key: str | None, headers: dict[str, str],
                query: dict[str, str]) -> tuple[str, ...]:
    auth = manifest.auth
    if auth.scheme in ("none", SIGNING_SCHEME):  # signing: by the credential, after rendering
        return ()
    if not api_key:
        if auth.required:
            names = " or ".join(auth.env) or "api_key="
            raise EngineError("authentication",
                              f"no API key for {manifest.id}: pass api_key= or set {names}",
                              provider=manifest.id, retryable=False)
        return ()
    AUTH_SCHEMES[auth.scheme](auth, api_key, headers, query)
    return (api_key,)
