"""Retrieval-augmented generation: chunking (more to come: embeddings, LanceDB store, retriever, evaluation)."""  # noqa: E501

from __future__ import annotations

__all__: list[str] = []
