"""Run by .venv-litellm's interpreter: p50 of LiteLLM acompletion and of raw async httpx.

Usage: python litellm_probe.py OPENAI_BASE_URL N  → prints one JSON line.
Kept free of devora_lab imports: LiteLLM lives in its own environment.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import httpx
import litellm  # type: ignore[import-not-found]  # lives in .venv-litellm only

MESSAGES = [{"role": "user", "content": "Reply with a short greeting."}]


async def main(base_url: str, n: int) -> dict[str, float]:
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 16}).encode()
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
    raw_s, lite_s = [], []
    async with httpx.AsyncClient() as raw:
        for _ in range(n + 30):
            start = time.perf_counter()
            json.loads((await raw.post(f"{base_url}/chat/completions", content=body,
                                       headers=headers)).content)
            middle = time.perf_counter()
            await litellm.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES,
                                      max_tokens=16, api_base=base_url, api_key="sk-bench")
            raw_s.append(middle - start)
            lite_s.append(time.perf_counter() - middle)
    return {"raw_p50_ms": statistics.median(raw_s[30:]) * 1000,
            "litellm_p50_ms": statistics.median(lite_s[30:]) * 1000}


if __name__ == "__main__":
    litellm.telemetry = False
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
