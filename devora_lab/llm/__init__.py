"""Talking to LLM providers: for now the price book that turns token counts into dollars.

The subpackage is imported lazily by the rest of devora_lab; ``pricing`` holds ``PriceBook``
and ``ModelPrice``.
"""

from __future__ import annotations

__all__: list[str] = []
