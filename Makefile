# Two commands from a fresh clone: `make demo` (the main job) and `make test`.
# Both create .venv at the repository root and install the locked versions into it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck unit bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	@touch $(STAMP)

demo: setup
	$(BIN)/devora-lab demo

test: setup lint typecheck unit

lint: setup
	$(BIN)/ruff check devora_lab tests benchmarks scripts examples

typecheck: setup
	$(BIN)/mypy

# GrowthBook's gbstats is a dev-only cross-check of our A/B statistics
# (tests/experiments/test_gbstats_agreement.py). It pins numpy<2 and pandas<2, so it gets its
# own venv. Wheels only: where they cannot be installed (pandas 1.5.3 stops at Python 3.11; set
# GBSTATS_PYTHON=python3.11) it warns, leaves no venv, and those tests are skipped.
GBSTATS_PYTHON ?= $(PYTHON)
GBSTATS_STAMP  := .venv-gbstats/.installed-stamp

$(GBSTATS_STAMP): requirements-gbstats.lock
	@echo "installing gbstats into .venv-gbstats (for the gbstats agreement tests)"
	@rm -rf .venv-gbstats
	@if $(GBSTATS_PYTHON) -m venv .venv-gbstats \
	    && .venv-gbstats/bin/pip install --quiet --disable-pip-version-check \
	       --only-binary=:all: -r requirements-gbstats.lock; then \
	    touch $(GBSTATS_STAMP); \
	else \
	    rm -rf .venv-gbstats; \
	    echo "could not install gbstats into .venv-gbstats: the gbstats agreement tests" \
	         "will be skipped" >&2; \
	fi

unit: setup $(GBSTATS_STAMP)
	$(BIN)/pytest

# LiteLLM is only a benchmark baseline; it pins its own openai, so it gets its own venv.
LITELLM_STAMP := .venv-litellm/.installed-stamp

$(LITELLM_STAMP): requirements-litellm.lock
	$(PYTHON) -m venv .venv-litellm
	.venv-litellm/bin/pip install --quiet --disable-pip-version-check -r requirements-litellm.lock
	@touch $(LITELLM_STAMP)

bench: setup $(LITELLM_STAMP)
	$(BIN)/python -m benchmarks

# Re-resolve the lock from pyproject.toml in a scratch environment.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet ".[dev,notebooks,local-embeddings]"
	# a local CPU build of torch (2.13.0+cpu) is pinned by its public version, so that the
	# lock also resolves where only PyPI's build exists
	.lock-venv/bin/pip freeze --exclude devora_lab | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .venv-litellm .venv-gbstats .mypy_cache .ruff_cache .pytest_cache .hypothesis benchmarks/.work
