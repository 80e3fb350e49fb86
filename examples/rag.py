"""RAG over your own documents: index them, retrieve within a token budget, answer with citations.

Shows: ``Indexer`` filling the workspace's document index (here: this repository's README
and docs/), ``Agent.retrieve`` returning whole chunks that fit ``max_tokens``, each headed
by a citation ``[n] source > heading (lines a-b)``, and an agent answering from them.
Re-running against the same workspace re-embeds nothing: unchanged files are skipped.

Run:  python examples/rag.py
      (``devora-lab rag index README.md docs/`` builds the same index from the shell)
"""

from __future__ import annotations

import os
from pathlib import Path

from _offline import example_workspace

from devora_lab import Agent, Lab
from devora_lab.rag.ingest import Indexer
from devora_lab.rag.retriever import citation

# The hashing embedder needs no model and is instant; the default ("auto") uses the local
# all-MiniLM-L6-v2 model when installed, which finds paraphrases better but loads slower.
os.environ.setdefault("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
REPO = Path(__file__).resolve().parents[1]


class DocsAssistant(Agent):
    name = "docs-assistant"
    model = "gpt-4o-mini"

    def answer(self, question: str) -> tuple[str, list[str]]:
        """The answer and the citations of the sources it was given."""
        found = self.retrieve(question, top_k=5, max_tokens=600)  # logged as `retrieval`
        prompt = ("Answer from the numbered sources only and cite them like [1].\n\n"
                  f"{found.context}\n\nQuestion: {question}")
        reply = self.call_llm([{"role": "user", "content": prompt}], max_tokens=150)
        print(f"retrieved {len(found.hits)} chunks, {found.tokens} tokens of context")
        return reply.text, [citation(n, hit) for n, hit in enumerate(found.hits, start=1)]


with example_workspace() as workspace, Lab(workspace) as lab:
    retriever = lab.retriever
    report = Indexer(retriever.store, retriever.embedder).index(
        [REPO / "README.md", REPO / "docs"], progress=False)
    print(f"indexed {report.files_indexed} files ({report.files_unchanged} unchanged): "
          f"{report.chunks_added} chunks added, {retriever.store.count()} in the index")

    assistant = DocsAssistant(lab, user_id="u-7")
    text, citations = assistant.answer("How are retries spaced, and is Retry-After honoured?")
    print("sources:")
    for line in citations:
        print("  " + line.replace(str(REPO) + "/", ""))
    print("answer:", text[:300])
