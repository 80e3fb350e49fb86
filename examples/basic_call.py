"""One chat call and one streamed call, each priced, timed and written to the event log.

Shows: ``Lab.client.complete`` and ``Lab.client.stream``; the answer's text, tokens, cost
and latency; and the ``llm.call`` event the call left in the log.

Run:  python examples/basic_call.py
      (offline by default; with OPENAI_API_KEY set it calls OpenAI for a fraction of a cent)
"""

from __future__ import annotations

from _offline import example_workspace

from devora_lab import Lab, Tags

QUESTION = [{"role": "user", "content": "In one sentence: why log every LLM call?"}]

with example_workspace() as workspace, Lab(workspace) as lab:
    tags = Tags(agent="hello-bot", user_id="u-17")

    reply = lab.client.complete(QUESTION, model="gpt-4o-mini", max_tokens=60, tags=tags)
    print("answer:  ", reply.text[:200])
    print(f"tokens:   {reply.usage.input_tokens} in, {reply.usage.output_tokens} out")
    print(f"cost:     ${reply.cost_usd:.6f} ({reply.cost_status})")
    print(f"latency:  {reply.latency_ms:.0f} ms, {reply.attempts} attempt(s), "
          f"model {reply.model}")

    print("\nstreamed: ", end="")
    with lab.client.stream(QUESTION, model="gpt-4o-mini", max_tokens=60, tags=tags) as stream:
        for chunk in stream:
            print(chunk.text, end="", flush=True)
    done = stream.completion
    assert done is not None  # set once the stream ended
    print(f"\n          {done.usage.output_tokens} tokens, ${done.cost_usd:.6f}, "
          f"first token after {done.ttft_ms:.0f} ms")

    # Every call is one `llm.call` row (plus one `llm.attempt` per HTTP request).
    with lab.event_log.store() as store:
        event = store.df(
            "SELECT kind, agent, user_id, provider, request_model, input_tokens, "
            "output_tokens, cost_usd, latency_ms, status, cache_outcome "
            "FROM events WHERE request_id = ? AND kind = 'llm.call'", [reply.request_id])
    print("\nthe logged event:")
    print(event.T.to_string(header=False))
