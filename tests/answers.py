"""Small answers shared by the tests that need one plain chat answer and nothing more.

Constructed, not recorded: the shape of OpenAI's chat completion object (the recorded
tests/data/responses/openai_chat_text.json, trimmed to the fields the engine reads).
"""

from __future__ import annotations

from typing import Any

OPENAI_HI: dict[str, Any] = {
    "id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
