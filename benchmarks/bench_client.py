"""Benchmarks of the LLM client: per-call overhead, import time and token counting.

What is measured, and why that baseline:

``client.overhead`` — the time our ``Client.complete`` adds to one chat call over the bare
HTTP round trip: the simulator runs in its own process with zero latency, and the same
request is sent in interleaved rounds by raw ``httpx`` (POST + ``json.loads``), by our
client (routing, request building, parsing, pricing, and the two events written to a real
event log), and by the official ``openai`` SDK. Overhead = p50(client) - p50(raw httpx).
The async variant compares our ``AsyncClient`` with LiteLLM's ``acompletion`` (run in its
own virtual environment, ``.venv-litellm``, made by ``make bench``, since LiteLLM pins its
own ``openai``), each against raw async ``httpx`` measured in the same process.

``client.import`` — ``import devora_lab`` in a fresh interpreter (median of 7), against
``import openai``; heavy dependencies are imported lazily, on first use.

``client.tokens`` — ``count_tokens(text, "gpt-4o")`` against calling the tiktoken encoding
directly on the same 2,000 texts of ~400 tokens; the ratio is raw time ÷ ours.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Context, benchmark, median
from benchmarks.table import Row
from devora_lab.events import EventLog
from devora_lab.llm.client import AsyncClient, Client
from devora_lab.llm.routing import ProviderConfig, Router

_OVERHEAD_GOAL_MS = 0.15
_IMPORT_GOAL_S = 0.2
_TOKENS_GOAL = 0.9
_LITELLM_FACTOR = 10.0
_REPO = Path(__file__).resolve().parents[1]
_LITELLM_PYTHON = _REPO / ".venv-litellm" / "bin" / "python"
_MESSAGES = [{"role": "user", "content": "Reply with a short greeting."}]
_MODEL = "gpt-4o-mini"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _simulator() -> Iterator[str]:
    """A zero-latency simulator in its own process; yields its OpenAI base URL."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devora_lab.cli",
            "sim",
            "serve",
            "--port",
            str(port),
            "--latency-scale",
            "0",
            "--seed",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"{base}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed_calls(call: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _sync_contenders(base_url: str, log: EventLog) -> dict[str, Callable[[], Any]]:
    import openai

    raw = httpx.Client()
    body = json.dumps({"model": _MODEL, "messages": _MESSAGES, "max_tokens": 16}).encode()
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}

    def raw_call() -> Any:
        return json.loads(
            raw.post(f"{base_url}/chat/completions", content=body, headers=headers).content
        )

    router = Router(
        {"openai": ProviderConfig("openai", base_url, "BENCH_KEY")}, env={"BENCH_KEY": "sk-bench"}
    )
    ours = Client(event_log=log, router=router)
    sdk = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    return {
        "raw": raw_call,
        "ours": lambda: ours.complete(_MESSAGES, model=_MODEL, max_tokens=16),
        "sdk": lambda: sdk.chat.completions.create(
            model=_MODEL,
            messages=_MESSAGES,  # type: ignore[arg-type]
            max_tokens=16,
        ),
    }


@benchmark("client.overhead")
def bench_overhead(ctx: Context) -> list[Row]:
    """Added time per call over raw httpx: ours vs the openai SDK (and LiteLLM, async)."""
    n, rounds = ctx.size(400, 60), 5
    with _simulator() as base_url:
        log = EventLog(ctx.scratch("client-log"))
        contenders = _sync_contenders(base_url, log)
        for call in contenders.values():
            _timed_calls(call, 30)  # warm connections and caches
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):  # interleaved, so drift hits every contender alike
            for name, call in contenders.items():
                samples[name] += _timed_calls(call, n // rounds)
        raw = _p50_ms(samples["raw"])
        ours, sdk = _p50_ms(samples["ours"]) - raw, _p50_ms(samples["sdk"]) - raw
        rows = [
            Row(
                benchmark=f"client.overhead: Client.complete over raw httpx, p50 of {n} calls",
                ours=ours,
                unit="ms/call",
                baseline_name="official openai SDK over raw httpx",
                baseline=sdk,
                goal=_OVERHEAD_GOAL_MS,
                notes=(
                    f"raw httpx p50 {raw:.3f} ms per round trip to the zero-latency simulator "
                    "(own process); ours includes routing, parsing, pricing and writing the "
                    "llm.attempt and llm.call events",
                ),
            )
        ]
        rows.append(_async_row(ctx, base_url))
        log.close()  # roll its segments now, before the scratch folder goes away
    return rows


def _async_row(ctx: Context, base_url: str) -> Row:
    import asyncio

    n = ctx.size(400, 60)
    router = Router(
        {"openai": ProviderConfig("openai", base_url, "BENCH_KEY")}, env={"BENCH_KEY": "sk-bench"}
    )

    async def measure() -> tuple[float, float]:
        body = json.dumps({"model": _MODEL, "messages": _MESSAGES, "max_tokens": 16}).encode()
        headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
        log = EventLog(ctx.scratch("async-log"))
        async with (
            httpx.AsyncClient() as raw,
            AsyncClient(event_log=log, router=router) as ours,
        ):
            raw_s, ours_s = [], []
            for _ in range(n + 30):
                start = time.perf_counter()
                json.loads(
                    (
                        await raw.post(
                            f"{base_url}/chat/completions", content=body, headers=headers
                        )
                    ).content
                )
                middle = time.perf_counter()
                await ours.complete(_MESSAGES, model=_MODEL, max_tokens=16)
                raw_s.append(middle - start)
                ours_s.append(time.perf_counter() - middle)
        log.close()
        return _p50_ms(raw_s[30:]), _p50_ms(ours_s[30:])

    raw, ours_total = asyncio.run(measure())
    ours = ours_total - raw
    litellm = _litellm_overhead(base_url, n)
    if litellm is None:
        return Row(
            benchmark="client.overhead: AsyncClient.complete over raw httpx (async)",
            ours=ours,
            unit="ms/call",
            notes=("LiteLLM not measured: .venv-litellm is missing (make bench creates it)",),
        )
    return Row(
        benchmark=f"client.overhead: AsyncClient.complete over raw httpx, p50 of {n} calls",
        ours=ours,
        unit="ms/call",
        baseline_name="LiteLLM acompletion over raw httpx",
        baseline=litellm,
        goal=litellm / _LITELLM_FACTOR,
        notes=(
            f"goal: at least {_LITELLM_FACTOR:.0f}x lower overhead than LiteLLM; LiteLLM "
            "ran in .venv-litellm against the same simulator, its own raw async httpx "
            "measured in that process",
            f"raw async httpx p50 here {raw:.3f} ms",
        ),
    )


def _litellm_overhead(base_url: str, n: int) -> float | None:
    if not _LITELLM_PYTHON.exists():
        return None
    probe = Path(__file__).with_name("litellm_probe.py")
    done = subprocess.run(
        [str(_LITELLM_PYTHON), str(probe), base_url, str(n)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"the LiteLLM probe failed: {done.stderr[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["litellm_p50_ms"]) - float(result["raw_p50_ms"])


@benchmark("client.import")
def bench_import(ctx: Context) -> list[Row]:
    """``import devora_lab`` in a fresh interpreter vs ``import openai``."""

    def seconds(module: str) -> float:
        code = (
            f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        )
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(7)
        ]
        return median(runs)

    return [
        Row(
            benchmark="client.import: import devora_lab, fresh interpreter, median of 7",
            ours=seconds("devora_lab"),
            unit="s",
            baseline_name="import openai",
            baseline=seconds("openai"),
            goal=_IMPORT_GOAL_S,
        )
    ]


@benchmark("client.tokens")
def bench_tokens(ctx: Context) -> list[Row]:
    """count_tokens vs the raw tiktoken encoding on the same texts."""
    from devora_lab.llm.tokens import count_tokens, encoding_for

    words = [
        "the",
        "event",
        "log",
        "keeps",
        "every",
        "call",
        "with",
        "its",
        "tokens",
        "cost",
        "latency",
        "and",
        "status",
        "so",
        "that",
        "teams",
        "can",
        "see",
        "where",
        "money",
        "goes",
        "and",
        "which",
        "prompts",
        "work",
    ]
    texts = [
        " ".join(words[(i + j) % len(words)] for j in range(300))
        for i in range(ctx.size(2000, 300))
    ]
    encoding = encoding_for("gpt-4o")
    count_tokens(texts[0], "gpt-4o")

    def raw() -> float:
        start = time.perf_counter()
        for text in texts:
            len(encoding.encode(text, disallowed_special=()))
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        for text in texts:
            count_tokens(text, "gpt-4o")
        return time.perf_counter() - start

    raw_s = median([raw() for _ in range(5)])
    ours_s = median([ours() for _ in range(5)])
    tokens = sum(len(encoding.encode(t)) for t in texts)
    return [
        Row(
            benchmark=f"client.tokens: count_tokens, {len(texts):,} texts, o200k_base",
            ours=tokens / ours_s / 1e6,
            unit="M tokens/s",
            higher_is_better=True,
            baseline_name="tiktoken encode() called directly",
            baseline=tokens / raw_s / 1e6,
            goal=_TOKENS_GOAL * tokens / raw_s / 1e6,
            notes=(f"goal: at least {_TOKENS_GOAL:.0%} of raw tiktoken's throughput",),
        )
    ]
