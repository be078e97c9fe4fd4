# The two README commands. Each installs what it needs first (scripts/bootstrap.sh).
.PHONY: demo test lint unit kernel cluster bootstrap clean

PY := .venv/bin/python
PYTEST := .venv/bin/pytest

bootstrap:
	@scripts/bootstrap.sh

## make demo: the main job on the embedded (SQLite) datastore
demo: bootstrap
	@scripts/demo.sh

## make test: lint, type-check and the whole test suite (unit, kernel, cluster)
test: bootstrap lint
	$(PYTEST) tests

lint: bootstrap
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy

unit: bootstrap
	$(PYTEST) tests/unit

kernel: bootstrap
	$(PYTEST) tests/kernel

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis
