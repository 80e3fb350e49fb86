"""What every example starts with: an LLM endpoint and a workspace. Your code needs neither.

In your own code, export ``OPENAI_API_KEY`` (or ``OPENAI_BASE_URL`` for any OpenAI-compatible
server) and write ``Lab()``: it logs to ``$DEVORA_WORKSPACE`` or ``./devora-workspace``.
The examples add two conveniences, so that ``python examples/<name>.py`` works on a fresh
clone with no key and no network:

- when neither ``OPENAI_BASE_URL`` nor ``OPENAI_API_KEY`` is set, they start the offline
  simulator (``devora_lab.sim.server.SimServer``) in this process and point the same
  variables a real provider is configured with at it, and say so;
- they write to a temporary workspace, deleted at the end, unless ``DEVORA_WORKSPACE``
  names one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from devora_lab.sim.server import SimServer


@contextmanager
def example_workspace(*, latency_scale: float = 0.02) -> Iterator[str]:
    """Yield the workspace folder to use, with an LLM endpoint configured meanwhile.

    ``latency_scale`` shrinks the simulator's realistic latencies (1.0) so examples run
    in seconds; it does nothing to a real provider.
    """
    with ExitStack() as stack:
        if not (os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")):
            sim = stack.enter_context(SimServer(seed=7, latency_scale=latency_scale))
            os.environ.update(sim.env())  # OPENAI_BASE_URL and ANTHROPIC_BASE_URL
            warm_up(sim.openai_base_url)
            print(f"[no OPENAI_BASE_URL or OPENAI_API_KEY set: using the offline simulator "
                  f"at {sim.base_url}]")
        workspace = os.environ.get("DEVORA_WORKSPACE") or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="devora-example-"))
        yield workspace


def warm_up(openai_base_url: str) -> None:
    """Send the simulator one request outside the log: its first answer loads its
    tokenizer, and that half second would otherwise show as the first call's latency."""
    httpx.post(f"{openai_base_url}/chat/completions", timeout=30, json={
        "model": "gpt-4o-mini", "max_tokens": 1,
        "messages": [{"role": "user", "content": "warm up"}]}).raise_for_status()
