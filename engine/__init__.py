"""engine: one client API for every LLM provider, driven by YAML manifests.

    from engine import AiClient
    client = await AiClient.create("provider/model-name")
    resp = await client.chat().system("Be brief.").user("Hello").execute()

Importing this package is cheap: it reads no manifest, opens no connection
and imports httpx/jinja2/jmespath only when a public name is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AiClient": "client",
    "SyncAiClient": "client",
    "AsyncChat": "client",
    "SyncChat": "client",
    "AsyncChatStream": "client",
    "SyncChatStream": "client",
    "Clock": "clock",
    "EngineError": "errors",
    "ManifestError": "errors",
    "KINDS": "errors",
    "InvalidRequestError": "errors",
    "AuthenticationError": "errors",
    "PermissionDeniedError": "errors",
    "NotFoundError": "errors",
    "ContextLengthExceededError": "errors",
    "RateLimitError": "errors",
    "QuotaExhaustedError": "errors",
    "ContentFilteredError": "errors",
    "OverloadedError": "errors",
    "ServerError": "errors",
    "RequestTimeoutError": "errors",
    "APIConnectionError": "errors",
    "IncompleteStreamError": "errors",
    "MalformedResponseError": "errors",
    "RequestCancelledError": "errors",
    "Message": "types",
    "Tool": "types",
    "ToolCall": "types",
    "Usage": "types",
    "ChatResponse": "types",
    "ChatRequest": "types",
    "Stats": "types",
    "EmbedResponse": "types",
    "EmbedUsage": "types",
    "ModelInfo": "types",
    "Part": "parts",
    "StreamEvent": "events",
    "RetryPolicy": "retry",
    "Timeouts": "limits",
    "Limits": "limits",
}

__all__ = [
    "KINDS",
    "APIConnectionError",
    "AiClient",
    "AsyncChat",
    "AsyncChatStream",
    "AuthenticationError",
    "ChatRequest",
    "ChatResponse",
    "Clock",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "EmbedResponse",
    "EmbedUsage",
    "EngineError",
    "IncompleteStreamError",
    "InvalidRequestError",
    "Limits",
    "MalformedResponseError",
    "ManifestError",
    "Message",
    "ModelInfo",
    "NotFoundError",
    "OverloadedError",
    "Part",
    "PermissionDeniedError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "Stats",
    "StreamEvent",
    "SyncAiClient",
    "SyncChat",
    "SyncChatStream",
    "Timeouts",
    "Tool",
    "ToolCall",
    "Usage",
]

if TYPE_CHECKING:
    from .client import (
        AiClient,
        AsyncChat,
        AsyncChatStream,
        SyncAiClient,
        SyncChat,
        SyncChatStream,
    )
    from .clock import Clock
    from .errors import (
        KINDS,
        APIConnectionError,
        AuthenticationError,
        ContentFilteredError,
        ContextLengthExceededError,
        EngineError,
        IncompleteStreamError,
        InvalidRequestError,
        MalformedResponseError,
        ManifestError,
        NotFoundError,
        OverloadedError,
        PermissionDeniedError,
        QuotaExhaustedError,
        RateLimitError,
        RequestCancelledError,
        RequestTimeoutError,
        ServerError,
    )
    from .events import StreamEvent
    from .limits import Limits, Timeouts
    from .parts import Part
    from .retry import RetryPolicy
    from .types import (
        ChatRequest,
        ChatResponse,
        EmbedResponse,
        EmbedUsage,
        Message,
        ModelInfo,
        Stats,
        Tool,
        ToolCall,
        Usage,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
