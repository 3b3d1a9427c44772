"""OpenTelemetry spans for every request, following the GenAI semantic conventions.

Optional: ``pip install "engine[otel]"``. :func:`default_hook` returns an
:class:`OpenTelemetryHook` only when ``opentelemetry`` is installed *and* the
application configured a tracer provider; otherwise it returns None and
nothing of OpenTelemetry is imported. The client adds it to its hooks by
itself, so configuring OpenTelemetry is all an application does.

One span per attempt (a retry is another request to the provider), named
``chat {model}``, kind CLIENT, with ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, the request parameters
that were set (``gen_ai.request.temperature``, ``.max_tokens``, ``.top_p``,
``.seed``, ``.stop_sequences``), and on success ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens`` and ``gen_ai.response.finish_reasons`` (not
``gen_ai.response.model``: manifests do not extract the answering model yet);
a failure sets the span status to ERROR and ``error.type`` to the error's
kind. Message content is never recorded.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .hooks import CallInfo

__all__ = ["OpenTelemetryHook", "default_hook"]

_PARAMS = {"temperature": "gen_ai.request.temperature",
           "max_tokens": "gen_ai.request.max_tokens", "top_p": "gen_ai.request.top_p",
           "seed": "gen_ai.request.seed", "stop": "gen_ai.request.stop_sequences"}


def default_hook() -> OpenTelemetryHook | None:
    """The hook, when OpenTelemetry is installed and a tracer provider is configured."""
    if importlib.util.find_spec("opentelemetry") is None:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return OpenTelemetryHook(provider.get_tracer("engine"))


class OpenTelemetryHook:
    """Starts a span when a request is sent; ends it with the answer or the error."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    def on_request(self, info: CallInfo) -> None:
        from opentelemetry.trace import SpanKind

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": info.operation,
            "gen_ai.provider.name": info.provider,
            "gen_ai.request.model": info.model,
        }
        for name, key in _PARAMS.items():
            value = info.params.get(name)
            if value is not None:
                attributes[key] = list(value) if isinstance(value, (list, tuple)) else value
        info.state["otel_span"] = self._tracer.start_span(
            f"{info.operation} {info.model}", kind=SpanKind.CLIENT, attributes=attributes)

    def on_response(self, info: CallInfo) -> None:
        span = info.state.pop("otel_span", None)
        if span is None:
            return
        usage = info.usage
        if usage is not None and usage.prompt_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        if usage is not None and usage.completion_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        if info.finish_reason is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [info.finish_reason])
        span.end()

    def on_error(self, info: CallInfo) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = info.state.pop("otel_span", None)
        if span is None:
            return
        kind = info.error.kind if info.error is not None else "error"
        span.set_attribute("error.type", kind)
        if info.status is not None:
            span.set_attribute("http.response.status_code", info.status)
        span.set_status(Status(StatusCode.ERROR, kind))
        span.end()
