# lit_noise developer commands. `make help` lists them.
# Every target creates .venv and installs what it needs when it is missing; torch is pinned to
# the CPU build through constraints.txt (an unpinned torch pulls a multi-GB CUDA build).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
PIP_FLAGS := --disable-pip-version-check -q
PYTEST_FLAGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train adaptive report demo test test-slow test-all lint format typecheck notebooks docs docs-serve bench bench-check check precommit clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install lit_noise with the dev tools

train: $(STAMP) ## Main job: the noise sweep (Hydra multirun, W&B offline runs), then its report
	@dir=$${SWEEP_DIR:-logs/noise_sweep/multiruns/$$(date +%Y-%m-%d_%H-%M-%S)}; \
	$(BIN)/lit-noise-train experiment=noise_sweep hydra.sweep.dir=$$dir $(ARGS) && \
	$(BIN)/lit-noise-report $$dir && \
	echo "W&B offline runs: $$dir/*/wandb/offline-run-* (upload: $(BIN)/wandb sync <run dir>)"

adaptive: $(STAMP) ## One run: the noise controller pulls input noise std 2.0 back (W&B offline), then its report
	@dir=$${RUN_DIR:-logs/adaptive/runs/$$(date +%Y-%m-%d_%H-%M-%S)}; \
	$(BIN)/lit-noise-train experiment=adaptive hydra.run.dir=$$dir $(ARGS) && \
	$(BIN)/lit-noise-report $$dir

report: $(STAMP) ## Report of a sweep: make report DIR=logs/noise_sweep/multiruns/<date>
	$(BIN)/lit-noise-report $(DIR)

demo: $(STAMP) ## The hand-written demo: train with and without noise, print clean/noisy accuracy
	$(BIN)/lit-noise-demo $(ARGS)

test: $(STAMP) ## Run the default test suite (unit + doctests, no slow tests)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_FLAGS)

test-slow: $(STAMP) ## Run only the slow tests (multi-process DDP, long fits)
	$(BIN)/python -m pytest -m slow $(PYTEST_FLAGS)

test-all: $(STAMP) ## Run every test
	$(BIN)/python -m pytest $(PYTEST_FLAGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

typecheck: $(STAMP) ## mypy --strict on src/
	$(BIN)/mypy

notebooks: $(STAMP) ## Execute the notebooks
	$(BIN)/python -m pytest --nbmake notebooks -o addopts="" $(PYTEST_FLAGS)

# The docs extra (mkdocs, Material, mkdocstrings) on top of the dev install, for the two docs targets.
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) -c constraints.txt -e ".[dev,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP) ## Build the documentation site into site/ (mkdocs build --strict: warnings are errors)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP) ## Serve the documentation site locally with live reload (mkdocs serve)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(STAMP) ## Run every benchmark, save their output in benchmarks/results/, regenerate README's summary
	$(BIN)/python benchmarks/summary.py $(ARGS)

bench-check: $(STAMP) ## Check that README's performance summary is the one benchmarks/results/ gives
	$(BIN)/python benchmarks/summary.py --check --from-results

check: lint typecheck test ## What CI checks (without the slow tests)

precommit: $(STAMP) ## Run the pre-commit hooks on every file
	$(BIN)/pre-commit run --all-files

clean: ## Remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache lightning_logs outputs multirun wandb logs
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
