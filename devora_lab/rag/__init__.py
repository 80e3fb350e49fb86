"""Retrieval-augmented generation over a team's own documents.

Here so far: token-aware chunking (``chunking``), a LanceDB chunk store with vector,
full-text and hybrid search (``store``), a retriever that builds a cited context within a
token budget (``retriever``) and retrieval metrics (``evaluation``). Embedders, ingestion and
the ``devora-lab rag`` commands come next.
"""

__all__: list[str] = []
