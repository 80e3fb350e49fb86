"""Keeping secrets out of events, logs, files and exception messages.

Known keys (the ones the client holds) are replaced wherever they appear; strings shaped like
common API keys and bearer tokens are masked too, in case a provider echoes one back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["REDACTED", "redact"]

REDACTED: Final = "[REDACTED]"
_KEY_SHAPES: Final = re.compile(
    r"(?:sk-(?:ant-|proj-|or-)?[A-Za-z0-9_\-]{12,}"  # OpenAI, Anthropic, OpenRouter
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{12,})"
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret and every key-shaped string replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)
