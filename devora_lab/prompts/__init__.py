"""Versioned prompt templates: built-ins plus a per-workspace registry.

``PromptRegistry.for_workspace(ws).get("code-review").render(...)`` gives messages ready to
send, tagged with the template's name and content-hashed version, so every logged call can
be traced to the exact text that produced it.
"""

from __future__ import annotations

from devora_lab.prompts.registry import PromptRegistry
from devora_lab.prompts.templates import RenderedPrompt, Template, TemplateError

__all__ = ["PromptRegistry", "RenderedPrompt", "Template", "TemplateError"]
