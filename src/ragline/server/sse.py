"""Server-sent events: one formatter for /v1/ask's stream and the OpenAI-compatible one.

    sse({"text": "Paris"}, "token")     # 'event: token\\ndata: {"text": "Paris"}\\n\\n'
"""

from __future__ import annotations

import json
from typing import Any


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event: `data` as JSON, under an event name if given."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"
