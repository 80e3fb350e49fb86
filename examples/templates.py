"""Versioned prompt templates: register, label, diff, render and call with one.

Shows: ``lab.prompts.register`` (a new version never overwrites an old one), labels that
move between versions, ``diff``, strict rendering (a missing variable is an error, not an
empty string) and an agent call that records the template's name and version.

Run:  python examples/templates.py
"""

from __future__ import annotations

from _offline import example_workspace

from devora_lab import Agent, Lab
from devora_lab.prompts.templates import TemplateError

SYSTEM = {"role": "system", "content": "You write release notes for {{ product }}."}
V1 = [SYSTEM, {"role": "user", "content": "Summarise these changes:\n{{ changes }}"}]
V2 = [SYSTEM, {"role": "user", "content": "Summarise these changes in at most "
               "{{ max_bullets }} bullets:\n{{ changes }}"}]


class ReleaseNotes(Agent):
    name = "release-notes"
    model = "gpt-4o-mini"


with example_workspace() as workspace, Lab(workspace) as lab:
    variables = {"product": "str", "changes": "str"}
    params = {"temperature": 0, "max_tokens": 120}
    first = lab.prompts.register("release-notes", V1, variables=variables, params=params)
    second = lab.prompts.register("release-notes", V2, params=params,
                                  variables={**variables, "max_bullets": "int"})
    print(f"registered versions {first.version} and {second.version}")
    lab.prompts.set_label("release-notes", "production", first.version)
    lab.prompts.set_label("release-notes", "staging", second.version)
    print("labels:", lab.prompts.labels("release-notes"))
    print(lab.prompts.diff("release-notes", first.version, second.version))

    template = lab.prompts.get("release-notes", label="staging")
    try:
        template.render(product="devora_lab", changes="- faster cache")
    except TemplateError as error:
        print(f"strict rendering: {error}")
    rendered = template.render(product="devora_lab", max_bullets=3,
                               changes="- faster cache\n- budgets in Redis")
    print("rendered user message:", rendered.messages[-1]["content"].splitlines()[0])

    agent = ReleaseNotes(lab, user_id="u-42")
    reply = agent.run_template("release-notes", label="staging", product="devora_lab",
                               max_bullets=3, changes="- faster cache\n- budgets in Redis")
    print(f"answer ({reply.usage.output_tokens} tokens): {reply.text[:120]}")
    with lab.event_log.store() as store:
        row = store.rows("SELECT template_name, template_version FROM events "
                         "WHERE request_id = ? AND kind = 'llm.call'", [reply.request_id])[0]
    print(f"the call's event records template {row[0]} version {row[1]}")
