"""Three example agents of a software team, used by the demo and as templates for your own.

Each renders a built-in prompt template and calls a model through its ``Lab``, so every
call is logged with the agent's name and the template's name and version.
"""

from __future__ import annotations

from collections.abc import Sequence

from devora_lab.agents import Agent
from devora_lab.llm.types import Completion

__all__ = ["Architect", "Coder", "Reviewer"]


class Coder(Agent):
    """Writes UI components from requirements."""

    name = "coder"
    model = "gpt-4o-mini"

    def generate_component(self, component_name: str, requirements: str, *,
                           framework: str = "React", language: str = "TypeScript",
                           styling: str = "Tailwind CSS") -> Completion:
        return self.run_template("component-generation", component_name=component_name,
                                 requirements=requirements, framework=framework,
                                 language=language, styling=styling, model=self.model)


class Architect(Agent):
    """Analyses a system's architecture with context retrieved from the team's documents."""

    name = "architect"
    model = "claude-3-5-sonnet-20241022"

    def analyse(self, project_name: str, system_description: str, *, file_tree: str = "",
                concerns: Sequence[str] = (), context: str | None = None,
                context_tokens: int = 1500) -> Completion:
        """Analyse the system; ``context`` defaults to documentation retrieved for it (cited,
        within ``context_tokens``) from the workspace's index, if one was built."""
        if context is None:
            context = self._documentation(system_description, context_tokens)
        description = system_description
        if context:
            description = f"{system_description}\n\nRelevant documentation:\n{context}"
        return self.run_template("architecture-analysis", project_name=project_name,
                                 system_description=description, file_tree=file_tree,
                                 concerns=list(concerns), model=self.model)

    def _documentation(self, question: str, budget: int) -> str:
        if self.lab.retriever.store.count() == 0:
            return ""  # no index built yet: analyse from the description alone
        return self.retrieve(question, max_tokens=budget).context


class Reviewer(Agent):
    """Reviews diffs; ``label`` picks the template version (an A/B test moves it)."""

    name = "reviewer"
    model = "gpt-4o"

    def review(self, diff: str, *, language: str = "Python", context: str = "",
               focus_areas: Sequence[str] = ("correctness", "security"),
               label: str | None = None, experiment: str | None = None) -> Completion:
        """Review ``diff``; inside ``experiment`` the unit's variant picks the version."""
        return self.run_template("code-review", label=label, diff=diff, language=language,
                                 context=context, focus_areas=list(focus_areas),
                                 model=self.model, params={"temperature": 0},
                                 experiment=experiment)
