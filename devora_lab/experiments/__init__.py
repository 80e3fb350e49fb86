"""A/B experiments for prompts and models; here so far: the statistics costs rely on."""

__all__: list[str] = []
