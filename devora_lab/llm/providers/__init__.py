"""Provider adapters: the OpenAI chat-completions and Anthropic Messages wire formats."""

from devora_lab.llm.providers.anthropic import AnthropicAdapter
from devora_lab.llm.providers.base import ParsedCompletion, ProviderAdapter, RequestSpec
from devora_lab.llm.providers.openai import OpenAIAdapter

__all__ = ["AnthropicAdapter", "OpenAIAdapter", "ParsedCompletion", "ProviderAdapter",
           "RequestSpec"]
