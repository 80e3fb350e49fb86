"""Translating OpenAI-format requests into Anthropic Messages requests."""

from __future__ import annotations

from typing import Any

import pytest

from devora_lab.errors import BadRequestError
from devora_lab.llm.providers.anthropic import AnthropicAdapter

ADAPTER = AnthropicAdapter("anthropic", "http://x", "key")


def body(messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    return ADAPTER.chat_request(messages, "claude-3-haiku-20240307", params, stream=False).body  # type: ignore[arg-type]


def test_images_become_anthropic_image_blocks() -> None:
    sent = body([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}])
    blocks = sent["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    assert blocks[2] == {"type": "image", "source": {"type": "url",
                                                     "url": "https://example.com/cat.jpg"}}


def test_system_cache_control_survives() -> None:
    system = [{"type": "text", "text": "long shared context",
               "cache_control": {"type": "ephemeral"}}]
    sent = body([{"role": "system", "content": system}, {"role": "user", "content": "Hi"}])
    assert sent["system"] == system
    plain = body([{"role": "system", "content": "a"}, {"role": "developer", "content": "b"},
                  {"role": "user", "content": "Hi"}])
    assert plain["system"] == "a\n\nb"


def test_tool_round_trip_and_parameter_mapping() -> None:
    sent = body(
        [{"role": "user", "content": "Weather in Oslo?"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "t1", "type": "function",
              "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
         {"role": "tool", "tool_call_id": "t1", "content": "3°C"}],
        tools=[{"type": "function", "function": {"name": "weather", "description": "d",
                                                 "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        stop="END", temperature=0.2, max_tokens=99, seed=4)
    assert sent["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}}]
    assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    assert sent["tools"] == [{"name": "weather", "description": "d",
                              "input_schema": {"type": "object"}}]
    assert sent["tool_choice"] == {"type": "tool", "name": "weather"}
    assert sent["stop_sequences"] == ["END"] and sent["max_tokens"] == 99
    assert "seed" not in sent  # Anthropic has no seed; sending it would be a 400


def test_unusable_input_is_a_clear_error() -> None:
    with pytest.raises(BadRequestError, match="not JSON"):
        body([{"role": "assistant", "tool_calls": [
            {"id": "t9", "function": {"name": "f", "arguments": "{\"cut"}}]}])
    with pytest.raises(BadRequestError, match="input_audio"):
        body([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])
    with pytest.raises(BadRequestError, match="role"):
        body([{"role": "narrator", "content": "x"}])
