"""An offline LLM provider: OpenAI and Anthropic wire formats on 127.0.0.1.

Agents, SDKs and our own client talk to it as to the real APIs, with realistic token
counts, latency, prompt caching, context limits and injected faults, all reproducible
from one seed::

    with SimServer(seed=1, faults=FaultConfig(rate_429=0.05), latency_scale=0) as sim:
        client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test")
        anthropic = Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test")

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``POST /v1/messages``,
``POST /v1/messages/count_tokens``, ``GET /v1/models``, ``GET /health``, ``GET /sim/stats``.
Per request, the ``x-sim-fault`` header forces a fault (``429|500|502|503|529|timeout|
reset|cut|malformed|none``) and ``x-sim-latency-scale`` overrides the latency scale. API
keys are accepted from ``Authorization: Bearer`` or ``x-api-key`` and never stored.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from devora_lab.errors import ConfigError
from devora_lab.sim import anthropic_api, openai_api
from devora_lab.sim.cache import PromptCache
from devora_lab.sim.faults import (
    Fault,
    FaultConfig,
    FaultKind,
    FaultPlan,
    retry_after_headers,
)
from devora_lab.sim.models import MODELS, LatencyModel, Timing, model_spec
from devora_lab.sim.responses import (
    Answer,
    Envelope,
    Frame,
    OutputLengths,
    PromptUsage,
    SimError,
    plan_answer,
    random_token,
)
from devora_lab.sim.transport import ChunkedWriter, Exchange, SimHTTPServer

__all__ = ["FaultConfig", "LatencyModel", "SimServer"]

Dialect = Literal["openai", "anthropic"]
_JSON: Final = "application/json"
_SSE: Final = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_MIN_PAUSE_S: Final = 0.002  # shorter pauses are accumulated: sleeping 50 us is all overhead
_BAD_GATEWAY: Final = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                       b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare"
                       b"</center>\r\n</body>\r\n</html>\r\n")
_FAULT_ERRORS: Final[dict[FaultKind, tuple[int, str, str, str]]] = {
    # kind: (status, error type, OpenAI message, Anthropic message)
    FaultKind.RATE_LIMIT: (429, "rate_limit_error", "Rate limit reached for requests. Please "
                           "try again in 1s.", "Number of requests has exceeded your rate "
                           "limit. Please reduce the prompt length or the maximum tokens "
                           "requested, or try again later."),
    FaultKind.SERVER_ERROR: (500, "api_error", "The server had an error while processing your "
                             "request. Sorry about that!", "Internal server error"),
    FaultKind.UNAVAILABLE: (503, "api_error", "The server is overloaded or not ready yet.",
                            "Service unavailable"),
    FaultKind.OVERLOADED: (529, "overloaded_error", "The server is overloaded or not ready "
                           "yet.", "Overloaded"),
}


class Stats:
    """Counts of requests, answers, faults and tokens served (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._started = time.monotonic()

    def add(self, **amounts: int) -> None:
        with self._lock:
            self._counts.update(amounts)

    def add_key(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[key] += amount

    def snapshot(self) -> dict[str, Any]:
        """Nested counters: ``requests``, ``endpoints``, ``statuses``, ``faults``, ``tokens``."""
        with self._lock:
            counts = dict(self._counts)

        def group(prefix: str) -> dict[str, int]:
            return {key.removeprefix(prefix): value for key, value in sorted(counts.items())
                    if key.startswith(prefix)}

        return {"requests": counts.get("requests", 0), "streams": counts.get("streams", 0),
                "endpoints": group("endpoint:"), "statuses": group("status:"),
                "faults": group("fault:"), "tokens": group("tokens:"),
                "uptime_s": round(time.monotonic() - self._started, 3)}


@dataclass(slots=True)
class _Call:
    """One API request being answered."""

    k: int
    dialect: Dialect
    request_id: str
    fault: Fault
    scale: float

    def headers(self, content_type: str = _JSON) -> dict[str, str]:
        name = "x-request-id" if self.dialect == "openai" else "request-id"
        return {"content-type": content_type, name: self.request_id}


class _Simulator:
    """The request handling behind ``SimServer``, free of sockets and threads."""

    def __init__(self, *, seed: int, faults: FaultConfig, latency_scale: float,
                 latency: LatencyModel, require_key: bool, cache_ttl_s: float) -> None:
        self.seed = seed
        self.faults = faults
        self.plan = FaultPlan(faults, seed)
        self.latency_scale = latency_scale
        self.latency = latency
        self.require_key = require_key
        self.cache = PromptCache(ttl_s=cache_ttl_s)
        self.lengths = OutputLengths(seed)
        self.stats = Stats()
        self._counter = itertools.count()
        self._routes: dict[str, tuple[Dialect, Callable[[Exchange, _Call, Any], None]]] = {
            "/v1/chat/completions": ("openai", self._openai_chat),
            "/v1/embeddings": ("openai", self._embeddings),
            "/v1/messages": ("anthropic", self._anthropic_chat),
            "/v1/messages/count_tokens": ("anthropic", self._count_tokens),
        }

    def handle(self, exchange: Exchange) -> None:
        path = exchange.path.rstrip("/") or "/"
        if exchange.method == "GET" and path in ("/health", "/sim/stats", "/v1/models"):
            self._get(exchange, path)
            return
        route = self._routes.get(path)
        dialect: Dialect = "anthropic" if path.startswith("/v1/messages") else "openai"
        call = _Call(next(self._counter), dialect, "", Fault(FaultKind.NONE, -1, 0.0), 0.0)
        call.request_id = "req_" + random_token(random.Random(f"{self.seed}:{call.k}"), 24)
        try:
            if route is None or exchange.method != "POST":
                status = 404 if route is None else 405
                raise SimError(status, "not_found_error", f"{exchange.method} {path} is not "
                               "an endpoint of this server", code="unknown_url")
            self._accept(exchange, call, path)
            route[1](exchange, call, self._json(exchange))
        except SimError as error:
            self._error(exchange, call, error)

    def _get(self, exchange: Exchange, path: str) -> None:
        if path == "/health":
            payload: Any = {"status": "ok"}
        elif path == "/sim/stats":
            payload = self.stats.snapshot()
        else:
            payload = {"object": "list", "data": [
                {"id": name, "object": "model", "created": 1_700_000_000,
                 "owned_by": "devora-sim"} for name in MODELS]}
        exchange.send(200, {"content-type": _JSON}, orjson.dumps(payload))

    def _accept(self, exchange: Exchange, call: _Call, path: str) -> None:
        """Count the request, check its key and read the simulator's own headers."""
        self.stats.add(requests=1)
        self.stats.add_key("endpoint:" + path.removeprefix("/v1/"))
        if self.require_key and not _api_key(exchange):
            message = ("You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                       "YOUR_KEY)." if call.dialect == "openai"
                       else "x-api-key header is required")
            raise SimError(401, "authentication_error", message)
        try:
            call.fault = self.plan.decide(call.k, exchange.header("x-sim-fault"))
            scale = exchange.header("x-sim-latency-scale")
            call.scale = self.latency_scale if scale is None else float(scale)
        except ValueError:
            raise SimError(400, "invalid_request_error", "x-sim-fault or x-sim-latency-scale "
                           "has an unknown value") from None
        if not 0 <= call.scale < math.inf:
            raise SimError(400, "invalid_request_error", "x-sim-latency-scale must be a "
                           "finite number >= 0")

    def _json(self, exchange: Exchange) -> Any:
        try:
            body = orjson.loads(exchange.body)
        except orjson.JSONDecodeError:
            raise SimError(400, "invalid_request_error", "the request body is not valid "
                           "JSON") from None
        if not isinstance(body, dict):
            raise SimError(400, "invalid_request_error", "the request body must be a JSON "
                           "object")
        return body

    def _error(self, exchange: Exchange, call: _Call, error: SimError,
               headers: Mapping[str, str] | None = None) -> None:
        self.stats.add_key(f"status:{error.status}")
        body = (openai_api.error_body(error) if call.dialect == "openai"
                else anthropic_api.error_body(error, call.request_id))
        exchange.send(error.status, {**call.headers(), **(headers or {})}, body)

    # -- faults ------------------------------------------------------------------------

    def _fault_first(self, exchange: Exchange, call: _Call) -> bool:
        """Apply a fault that replaces the answer; True when the request is done."""
        kind = call.fault.kind
        if kind in (FaultKind.NONE, FaultKind.CUT, FaultKind.MALFORMED):
            return False
        self.stats.add_key("fault:" + kind.value)
        if kind is FaultKind.TIMEOUT:
            return exchange.wait(self.faults.timeout_seconds)
        if kind is FaultKind.RESET:
            exchange.reset()
            return True
        exchange.wait(self.latency.error_delay(random.Random(call.k)) * call.scale)
        if kind is FaultKind.BAD_GATEWAY:
            self.stats.add_key("status:502")
            exchange.send(502, call.headers("text/html"), _BAD_GATEWAY)
            return True
        status, error_type, openai_message, anthropic_message = _FAULT_ERRORS[kind]
        headers = retry_after_headers(call.fault, self.faults) if status == 429 else {}
        if call.dialect == "openai":
            status = 503 if status == 529 else status
            code = "rate_limit_exceeded" if status == 429 else None
            error = SimError(status, error_type, openai_message, code=code)
        else:
            error = SimError(status, error_type, anthropic_message)
        self._error(exchange, call, error, headers)
        return True

    # -- endpoints ---------------------------------------------------------------------

    def _openai_chat(self, exchange: Exchange, call: _Call, body: dict[str, Any]) -> None:
        spec = model_spec(openai_api.check_model(body.get("model")))
        request, chain = openai_api.parse_chat(body, self.seed, spec)
        if self._fault_first(exchange, call):
            return
        cached = self.cache.openai_cached_tokens(chain, spec.cache_min_tokens)
        prompt = PromptUsage(request.prompt_tokens, cache_read=cached)
        answer = plan_answer(request, spec, self.lengths)
        envelope = Envelope("chatcmpl-" + random_token(random.Random(call.request_id), 29),
                            int(time.time()), spec.served_name)
        timing = self._timing(request.key, spec.name, request.prompt_tokens, answer, call)
        self._count_tokens_served(prompt, answer)
        if body.get("stream") is True:
            options = body.get("stream_options")
            include = isinstance(options, dict) and options.get("include_usage") is True
            self._stream(exchange, call, openai_api.chat_frames(envelope, answer, prompt, include),
                         timing, answer)
        else:
            self._complete(exchange, call, openai_api.chat_json(envelope, answer, prompt),
                           timing.total_s(answer.output_tokens - answer.reasoning_tokens))

    def _anthropic_chat(self, exchange: Exchange, call: _Call, body: dict[str, Any]) -> None:
        spec = model_spec(anthropic_api.check_model(body.get("model")))
        _require_version(exchange)
        request, chain, breakpoints = anthropic_api.parse_chat(body, self.seed, spec)
        if self._fault_first(exchange, call):
            return
        read, write = self.cache.anthropic_cache(chain, breakpoints, spec.cache_min_tokens)
        prompt = PromptUsage(request.prompt_tokens, cache_read=read, cache_write=write)
        answer = plan_answer(request, spec, self.lengths)
        envelope = Envelope("msg_01" + random_token(random.Random(call.request_id), 22),
                            int(time.time()), spec.name)
        timing = self._timing(request.key, spec.name, request.prompt_tokens, answer, call)
        self._count_tokens_served(prompt, answer)
        if body.get("stream") is True:
            self._stream(exchange, call, anthropic_api.chat_frames(envelope, answer, prompt),
                         timing, answer)
        else:
            self._complete(exchange, call, anthropic_api.chat_json(envelope, answer, prompt),
                           timing.total_s(answer.output_tokens))

    def _count_tokens(self, exchange: Exchange, call: _Call, body: dict[str, Any]) -> None:
        spec = model_spec(anthropic_api.check_model(body.get("model")))
        _require_version(exchange)
        self.stats.add_key("status:200")
        exchange.send(200, call.headers(), anthropic_api.count_input_tokens(body, spec))

    def _embeddings(self, exchange: Exchange, call: _Call, body: dict[str, Any]) -> None:
        payload, tokens = openai_api.embeddings(body, self.seed)
        if self._fault_first(exchange, call):
            return
        self.stats.add(**{"tokens:embedding": tokens})
        delay = self.latency.embedding_delay(random.Random(call.k), tokens) * call.scale
        self._complete(exchange, call, payload, delay)

    def _timing(self, key: int, model: str, prompt_tokens: int, answer: Answer,
                call: _Call) -> Timing:
        """Latency of this answer; hidden reasoning happens before the first token."""
        timing = self.latency.sample(random.Random(key), model_spec(model), prompt_tokens)
        thinking = timing.tpot_s * answer.reasoning_tokens
        return Timing(timing.ttft_s + thinking, timing.tpot_s).scaled(call.scale)

    def _count_tokens_served(self, prompt: PromptUsage, answer: Answer) -> None:
        self.stats.add(**{"tokens:prompt": prompt.tokens, "tokens:cached": prompt.cache_read,
                          "tokens:cache_creation": prompt.cache_write,
                          "tokens:completion": answer.output_tokens,
                          "tokens:reasoning": answer.reasoning_tokens})

    # -- sending -----------------------------------------------------------------------

    def _complete(self, exchange: Exchange, call: _Call, payload: bytes, delay: float) -> None:
        """A JSON answer after ``delay``, unless a fault cuts or breaks it."""
        if exchange.wait(delay):
            return
        kind = call.fault.kind
        if kind is FaultKind.CUT:
            self.stats.add_key("fault:cut")
            keep = max(1, int(len(payload) * (0.2 + 0.6 * call.fault.detail)))
            exchange.send_truncated(200, call.headers(), payload, keep)
            return
        if kind is FaultKind.MALFORMED:
            self.stats.add_key("fault:malformed")
            payload = _broken_json(payload, call.fault.detail)
        self.stats.add_key("status:200")
        exchange.send(200, call.headers(), payload)

    def _stream(self, exchange: Exchange, call: _Call, frames: list[Frame], timing: Timing,
                answer: Answer) -> None:
        """Server-sent events paced at the answer's speed, cut or broken by a fault."""
        self.stats.add(streams=1)
        content = [index for index, frame in enumerate(frames) if frame.content]
        cut, broken = _fault_positions(call.fault, content, len(frames))
        visible = answer.output_tokens - answer.reasoning_tokens
        per_frame = timing.tpot_s * visible / len(content) if content else 0.0
        if exchange.wait(timing.ttft_s):
            return
        writer = exchange.stream(200, {**call.headers(_SSE["content-type"]), **_SSE})
        if per_frame == 0 and cut is None and broken is None:
            writer.write(b"".join(frame.data for frame in frames))  # nothing to pace
        elif not self._paced(exchange, writer, frames, per_frame, (cut, broken)):
            return
        self.stats.add_key("status:200")
        writer.end()

    def _paced(self, exchange: Exchange, writer: ChunkedWriter, frames: list[Frame],
               per_frame: float, faults: tuple[int | None, int | None]) -> bool:
        """Write the frames a token at a time; False if the stream was cut (or the server
        stopped) on the way."""
        cut, broken = faults
        debt, started = 0.0, False
        for index, frame in enumerate(frames):
            if index == cut:
                self.stats.add_key("fault:cut")
                writer.abort()
                return False
            if frame.content:
                debt += per_frame if started else 0.0  # the first token came with the TTFT
                started = True
                if debt >= _MIN_PAUSE_S:
                    writer.flush()
                    if exchange.wait(debt):
                        writer.abort()
                        return False
                    debt = 0.0
            writer.write(_broken_sse(frame.data) if index == broken else frame.data)
        if broken is not None:
            self.stats.add_key("fault:malformed")
        return True


def _fault_positions(fault: Fault, content: list[int], total: int
                     ) -> tuple[int | None, int | None]:
    """Index of the frame a cut stream stops before (after at least one content frame) and
    of the frame sent broken, for the request's fault."""
    if fault.kind is FaultKind.CUT:
        if not content:
            return total - 1, None
        nth = 1 + int(fault.detail * (len(content) - 1))
        return (content[nth] if nth < len(content) else content[-1] + 1), None
    if fault.kind is FaultKind.MALFORMED:
        return None, content[int(fault.detail * len(content))] if content else 0
    return None, None


def _broken_json(payload: bytes, detail: float) -> bytes:
    """A JSON document cut short, the way a proxy's truncation breaks it."""
    return payload[: max(1, int(len(payload) * (0.3 + 0.5 * detail)))]


def _broken_sse(data: bytes) -> bytes:
    """The same event with its JSON data cut in half (the event line kept)."""
    head, _, rest = data.partition(b"data: ")
    json_text = rest.rstrip(b"\n")
    return head + b"data: " + json_text[: max(1, len(json_text) // 2)] + b"\n\n"


def _api_key(exchange: Exchange) -> str | None:
    authorization = exchange.header("authorization") or ""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return (exchange.header("x-api-key") or "").strip() or None


def _require_version(exchange: Exchange) -> None:
    if not exchange.header("anthropic-version"):
        raise SimError(400, "invalid_request_error", "anthropic-version: header is required")


class SimServer:
    """The simulator on ``host:port`` (a free port when 0), served by a daemon thread.

    ``seed`` fixes every answer, latency and fault; ``latency_scale`` multiplies all waits
    (0: none at all, for tests and benchmarks); ``require_key`` answers 401 to requests
    without an API key; ``cache_ttl_s`` is how long a prompt prefix stays cached.
    """

    def __init__(self, seed: int = 0, faults: FaultConfig | None = None,
                 latency_scale: float = 1.0, host: str = "127.0.0.1", port: int = 0, *,
                 latency: LatencyModel | None = None, require_key: bool = False,
                 cache_ttl_s: float = 300.0) -> None:
        if latency_scale < 0:
            raise ConfigError("latency_scale must not be negative",
                              fix="use 0 for no waiting, 1 for realistic latency")
        self.host = host
        self.requested_port = port
        self.faults = faults or FaultConfig()
        self._app = _Simulator(seed=seed, faults=self.faults, latency_scale=latency_scale,
                               latency=latency or LatencyModel(), require_key=require_key,
                               cache_ttl_s=cache_ttl_s)
        self._httpd: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._httpd = SimHTTPServer((self.host, self.requested_port), self._app.handle)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"devora-sim:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running; call start() or use `with`")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def env(self) -> dict[str, str]:
        """The environment variables that point the official SDKs at this server."""
        return {"OPENAI_BASE_URL": self.openai_base_url,
                "ANTHROPIC_BASE_URL": self.anthropic_base_url}

    def stats(self) -> dict[str, Any]:
        """Requests, streams, answers by status, faults by kind and tokens served."""
        return self._app.stats.snapshot()

    @property
    def cache(self) -> PromptCache:
        """The simulated provider prompt cache (``clear()`` it to start cold)."""
        return self._app.cache

