"""``Client`` and ``AsyncClient``: chat completions with retries, fallback, prices and events.

Both are thin shells over ``CallDriver``, which makes every decision; they only send bytes
and wait. The HTTP transport can be injected (``httpx.MockTransport`` in tests, a shared
connection pool in production).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Self

import httpx

from devora_lab.errors import ProviderConnectionError, ProviderError
from devora_lab.llm.driver import BudgetHook, CallDriver, CallSettings, Tags
from devora_lab.llm.policy import CircuitBreaker, FallbackPolicy, RetryPolicy
from devora_lab.llm.providers.anthropic import DEFAULT_MAX_TOKENS
from devora_lab.llm.providers.base import ParsedCompletion
from devora_lab.llm.routing import ProviderConfig, Route, Router
from devora_lab.llm.sse import ServerSentEvent, SSEDecoder
from devora_lab.llm.types import Chunk, Completion, CostEstimate, MessageLike

if TYPE_CHECKING:
    from devora_lab.cache import ResponseCache
    from devora_lab.cache.entry import CacheEntry
    from devora_lab.events import Event, EventLog
    from devora_lab.llm.pricing import PriceBook

__all__ = ["AsyncClient", "AsyncStream", "Client", "Stream"]

_DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class _Base:
    """Configuration shared by both clients (no I/O here)."""

    def __init__(
        self,
        *,
        event_log: EventLog | None = None,
        providers: Mapping[str, ProviderConfig] | None = None,
        router: Router | None = None,
        price_book: PriceBook | None = None,
        retry: RetryPolicy | None = None,
        fallback: FallbackPolicy | None = None,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        breaker: CircuitBreaker | None = None,
        content_policy: str = "hashed",
        tags: Tags | None = None,
        timeout: float | httpx.Timeout | None = None,
        cache: ResponseCache | None = None,
        budget: BudgetHook | None = None,
        observers: Sequence[Callable[[Event], None]] = (),
    ) -> None:
        from devora_lab.llm.pricing import PriceBook

        self.settings = CallSettings(
            router=router if router is not None else Router(providers),
            event_log=event_log,
            price_book=price_book if price_book is not None else PriceBook.default(),
            retry=retry if retry is not None else RetryPolicy(),
            fallback=fallback if fallback is not None else FallbackPolicy(),
            breaker=breaker if breaker is not None else CircuitBreaker(),
            fallbacks=dict(fallbacks or {}),
            content_policy=content_policy,
            tags=tags if tags is not None else Tags(),
            cache=cache,
            budget=budget,
            observers=tuple(observers),
        )
        if timeout is None:
            self.timeout = _DEFAULT_TIMEOUT
        elif isinstance(timeout, httpx.Timeout):
            self.timeout = timeout
        else:
            self.timeout = httpx.Timeout(timeout)

    @classmethod
    def from_workspace(cls, workspace: str | os.PathLike[str] | None = None,
                       **options: Any) -> Self:
        """A client logging to a workspace's event log, configured from its settings.

        Providers and base URLs come from ``devora.toml`` and the environment
        (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL`` point them at the simulator); keys from
        the environment only.
        """
        from devora_lab.workspace import Workspace

        return cls(**{**Workspace(workspace).ensure().client_options(), **options})

    def estimate(self, messages: Sequence[MessageLike], *, model: str,
                 max_tokens: int | None = None) -> CostEstimate:
        """Tokens and the most a call could cost, without sending it.

        Without ``max_tokens`` the output reserve is 4,096 tokens (Anthropic's default here).
        """
        from devora_lab.llm.tokens import count_message_tokens, is_exact

        route = self.settings.router.resolve(model)
        book = self.settings.price_book
        tokens = count_message_tokens(messages, route.model)
        reserve = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
        return CostEstimate(
            model=route.model, input_tokens=tokens, max_output_tokens=reserve,
            exact=is_exact(route.model), input_cost_usd=book.cost(route.model, tokens, 0),
            max_cost_usd=book.cost(route.model, tokens, reserve),
            context_window=book.context_window(route.model))

    def _driver(self, messages: Sequence[MessageLike], model: str, params: Mapping[str, Any],
                stream: bool, tags: Tags | None, fallbacks: Sequence[str] | None) -> CallDriver:
        return CallDriver(self.settings, messages, model, params, stream=stream, tags=tags,
                          fallbacks=fallbacks)


class _Progress:
    """What one streamed attempt has received, and what its outcome means for the call."""

    def __init__(self, driver: CallDriver, route: Route) -> None:
        self.driver = driver
        self.route = route
        self.state = route.adapter.new_stream(route.model)
        self.started = driver.settings.clock()
        self.first: float | None = None
        self.pieces: list[str] = []

    def feed(self, events: list[ServerSentEvent]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for event in events:
            for chunk in self.state.feed(event):
                if chunk.text:
                    self.pieces.append(chunk.text)
                    if self.first is None:
                        self.first = self.driver.settings.clock()
                chunks.append(chunk)
        return chunks

    def raise_for_status(self, response: httpx.Response) -> None:
        raise self.driver.http_error(self.route, response.status_code, response.content,
                                     response.headers)

    def check_done(self) -> None:
        if not self.state.done:
            raise ProviderConnectionError(
                f"the stream from {self.route.deployment} ended before its last event",
                provider=self.route.adapter.name, model=self.route.model)

    def failed(self, exc: httpx.HTTPError | ProviderError) -> float | None:
        """Record the failure; raise if text had arrived, else return the wait before
        the next try (None: move on)."""
        driver, route = self.driver, self.route
        error = (driver.transport_error(route, exc) if isinstance(exc, httpx.HTTPError)
                 else driver.scrub(exc))
        if self.state.saw_content:
            raise driver.interrupted(route, error, self.state.result(), self.started) from None
        return driver.fail(route, error, self.started)

    def finish(self) -> Completion:
        return self.driver.succeed(self.route, self.state.result(), self.started, self.first,
                                   tuple(self.pieces))


def _replay(entry: CacheEntry) -> Iterator[Chunk]:
    """A cached answer as a stream: its pieces, then the end with usage."""
    for piece in entry.replay_chunks():
        yield Chunk(text=piece)
    done = entry.completion
    yield Chunk(tool_calls=done.tool_calls, finish_reason=done.finish_reason, usage=done.usage)


def _parse(driver: CallDriver, route: Route, response: httpx.Response) -> ParsedCompletion:
    if response.status_code >= 400:
        raise driver.http_error(route, response.status_code, response.content, response.headers)
    return route.adapter.parse_chat(response.content, route.model)


class Client(_Base):
    """Synchronous client. ``complete`` returns a ``Completion``; ``stream`` a ``Stream``.

    >>> client = Client(event_log=EventLog("ws/events"))          # doctest: +SKIP
    >>> client.complete([{"role": "user", "content": "Hi"}], model="gpt-4o-mini").text
    """

    def __init__(self, *, transport: httpx.BaseTransport | None = None,
                 http_client: httpx.Client | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=self.timeout)

    def complete(self, messages: Sequence[MessageLike], *, model: str, tags: Tags | None = None,
                 fallbacks: Sequence[str] | None = None, **params: Any) -> Completion:
        """Send a chat request; retry, fall back, price and log it; return the answer.

        Cache options (``cache_ttl``, ``no_cache``, ``no_store``, ``cache_namespace``) are
        taken out of ``params``; everything else is sent to the provider.
        """
        driver = self._driver(messages, model, params, False, tags, fallbacks)
        if (entry := driver.cached()) is not None:
            return driver.hit(entry)
        while (route := driver.next_route()) is not None:
            spec = driver.request(route)
            started = driver.settings.clock()
            try:
                response = self._http.post(spec.url, headers=spec.headers,
                                           content=driver.body_bytes(spec))
                parsed = _parse(driver, route, response)
            except httpx.HTTPError as exc:
                error = driver.transport_error(route, exc)
            except ProviderError as exc:
                error = driver.scrub(exc)
            else:
                return driver.succeed(route, parsed, started)
            delay = driver.fail(route, error, started)
            if delay:
                time.sleep(delay)
        raise driver.give_up()

    def stream(self, messages: Sequence[MessageLike], *, model: str, tags: Tags | None = None,
               fallbacks: Sequence[str] | None = None, **params: Any) -> Stream:
        """Stream a chat answer: iterate the ``Stream`` for ``Chunk`` values."""
        driver = self._driver(messages, model, params, True, tags, fallbacks)
        return Stream(self, driver)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Stream:
    """An answer arriving chunk by chunk. After the last chunk, ``completion`` is set.

    Retries and fallbacks happen until the first text arrives; a failure after that raises
    ``StreamInterruptedError`` with the text received so far.
    """

    def __init__(self, client: Client, driver: CallDriver) -> None:
        self._client = client
        self._driver = driver
        self.completion: Completion | None = None
        self._progress: _Progress | None = None
        self._finished = False
        self._iterator = self._run()

    def __iter__(self) -> Iterator[Chunk]:
        return self._iterator

    def __next__(self) -> Chunk:
        return next(self._iterator)

    def text(self) -> str:
        """Read the whole stream and return its text."""
        for _ in self:
            pass
        assert self.completion is not None
        return self.completion.text

    def _run(self) -> Generator[Chunk, None, None]:
        driver = self._driver
        try:
            if (entry := driver.cached()) is not None:
                yield from _replay(entry)
                self.completion = driver.hit(entry)
                return
            while (route := driver.next_route()) is not None:
                spec = driver.request(route)
                progress = self._progress = _Progress(driver, route)
                try:
                    with self._client._http.stream("POST", spec.url, headers=spec.headers,
                                                   content=driver.body_bytes(spec)) as response:
                        if response.status_code >= 400:
                            response.read()
                            progress.raise_for_status(response)
                        decoder = SSEDecoder()
                        for raw in response.iter_bytes():
                            yield from progress.feed(decoder.feed(raw))
                        progress.check_done()
                except (httpx.HTTPError, ProviderError) as exc:
                    delay = progress.failed(exc)
                    if delay:
                        time.sleep(delay)
                    continue
                self.completion = progress.finish()
                return
            raise driver.give_up()
        finally:
            self._finished = True

    def close(self) -> None:
        """Stop reading; a stream closed before its end is logged as cancelled."""
        if self.completion is None and not self._finished:
            self._iterator.close()
            partial = None if self._progress is None else self._progress.state.result()
            self._driver.cancelled(self._driver._route, partial)
        self._iterator.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Base):
    """Asynchronous client with the same behaviour as ``Client``."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None,
                 http_client: httpx.AsyncClient | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=self.timeout)

    async def complete(self, messages: Sequence[MessageLike], *, model: str,
                       tags: Tags | None = None, fallbacks: Sequence[str] | None = None,
                       **params: Any) -> Completion:
        """Send a chat request; retry, fall back, price and log it; return the answer."""
        driver = self._driver(messages, model, params, False, tags, fallbacks)
        if (entry := driver.cached()) is not None:
            return driver.hit(entry)
        while (route := driver.next_route()) is not None:
            spec = driver.request(route)
            started = driver.settings.clock()
            try:
                response = await self._http.post(spec.url, headers=spec.headers,
                                                 content=driver.body_bytes(spec))
                parsed = _parse(driver, route, response)
            except httpx.HTTPError as exc:
                error = driver.transport_error(route, exc)
            except ProviderError as exc:
                error = driver.scrub(exc)
            else:
                return driver.succeed(route, parsed, started)
            delay = driver.fail(route, error, started)
            if delay:
                await asyncio.sleep(delay)
        raise driver.give_up()

    def stream(self, messages: Sequence[MessageLike], *, model: str, tags: Tags | None = None,
               fallbacks: Sequence[str] | None = None, **params: Any) -> AsyncStream:
        """Stream a chat answer: ``async for`` over the ``AsyncStream``."""
        driver = self._driver(messages, model, params, True, tags, fallbacks)
        return AsyncStream(self, driver)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncStream:
    """The async counterpart of ``Stream``."""

    def __init__(self, client: AsyncClient, driver: CallDriver) -> None:
        self._client = client
        self._driver = driver
        self.completion: Completion | None = None
        self._progress: _Progress | None = None
        self._finished = False
        self._iterator = self._run()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._iterator

    async def __anext__(self) -> Chunk:
        return await self._iterator.__anext__()

    async def text(self) -> str:
        async for _ in self:
            pass
        assert self.completion is not None
        return self.completion.text

    async def _run(self) -> AsyncGenerator[Chunk, None]:
        driver = self._driver
        try:
            if (entry := driver.cached()) is not None:
                for chunk in _replay(entry):
                    yield chunk
                self.completion = driver.hit(entry)
                return
            while (route := driver.next_route()) is not None:
                spec = driver.request(route)
                progress = self._progress = _Progress(driver, route)
                try:
                    async with self._client._http.stream(
                        "POST", spec.url, headers=spec.headers, content=driver.body_bytes(spec)
                    ) as response:
                        if response.status_code >= 400:
                            await response.aread()
                            progress.raise_for_status(response)
                        decoder = SSEDecoder()
                        async for raw in response.aiter_bytes():
                            for chunk in progress.feed(decoder.feed(raw)):
                                yield chunk
                        progress.check_done()
                except (httpx.HTTPError, ProviderError) as exc:
                    delay = progress.failed(exc)
                    if delay:
                        await asyncio.sleep(delay)
                    continue
                self.completion = progress.finish()
                return
            raise driver.give_up()
        finally:
            self._finished = True


    async def aclose(self) -> None:
        if self.completion is None and not self._finished:
            await self._iterator.aclose()
            partial = None if self._progress is None else self._progress.state.result()
            self._driver.cancelled(self._driver._route, partial)
        await self._iterator.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
