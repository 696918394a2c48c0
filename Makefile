# Every target does its own set-up from a fresh clone: nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# jlpm (yarn 3) comes from jupyter-builder in the venv; node >= 20.19 is preinstalled.
JLPM   := PATH="$(CURDIR)/$(BIN):$$PATH" jlpm
LAB    := labextension
# Quiet, lockfile-bound installs (as in CI) that share yarn's global cache.
export YARN_ENABLE_IMMUTABLE_INSTALLS := true
export YARN_ENABLE_GLOBAL_CACHE := true
export YARN_ENABLE_PROGRESS_BARS := false
export YARN_ENABLE_TELEMETRY := false
NODE_STAMP := $(LAB)/node_modules/.neo-installed
UI_STAMP   := $(LAB)/ui-tests/node_modules/.neo-installed
LAB_BUILT  := jupyter_neo/labextension/static/style.js
LAB_SRC    := $(shell find $(LAB)/src $(LAB)/style -type f -not -path '*/__tests__/*') \
              $(LAB)/package.json $(LAB)/tsconfig.json

.PHONY: demo deps k8s-harness test lint lint-js jest fmt bench clean

# `pip install -e` also builds the sidebar (hatch-jupyter-builder runs jlpm install + jlpm build);
# `jupyter-builder develop` then links the venv's share/jupyter/labextensions/jupyter-neo to that
# build, so later `jlpm build`s go live without reinstalling.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# A built sidebar already holds a copy of install.json, which the wheel's shared-data maps
	# too: hatchling refuses the second file, so a re-install after a pyproject.toml change failed.
	rm -f jupyter_neo/labextension/install.json
	$(BIN)/pip install -q -e '.[test]'
	# Bytecode now: an editable install writes it on first import, unless PYTHONDONTWRITEBYTECODE
	# is set (common in containers), when every `neo` would compile its modules again (~7 ms).
	$(BIN)/python -m compileall -q jupyter_neo >/dev/null
	# The CPU build of torch (a pinned release; an unpinned one pulls a multi-GB CUDA build).
	$(BIN)/pip install -q 'torch==2.13.0' numpy
	$(BIN)/jupyter-builder develop --overwrite . >/dev/null
	touch $(STAMP)

## deps: system packages the tests need (Debian's chromium for the browser test, openssh for the
## SSH fleet and Slurm login-node tests); idempotent, installs only what is missing
DEPS_CMDS := /usr/bin/chromium:chromium /usr/sbin/sshd:openssh-server /usr/bin/ssh:openssh-client
deps:
	@missing=""; for pair in $(DEPS_CMDS); do \
	  [ -x "$${pair%%:*}" ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing >/dev/null; \
	  else \
	    echo "deps: missing$$missing; run: sudo apt-get install -y$$missing" >&2; \
	  fi; \
	fi

## k8s-harness: the real-Kubernetes test tier (tests/engines/kubernetes/): Debian packages, and
## Kubernetes v1.20.2 built ONCE per machine into /var/cache/jupyter-neo/k8s-1.20.2 (~10 min on
## 2 cores; afterwards ~0.1 s). Needs root; without it the real-cluster tests skip and say why.
k8s-harness:
	@if [ "$$(id -u)" = 0 ]; then tests/engines/kubernetes/build-all.sh; \
	else echo "k8s-harness: not root, the real-Kubernetes tests will skip" >&2; fi

$(NODE_STAMP): $(STAMP) $(LAB)/yarn.lock $(LAB)/package.json
	cd $(LAB) && $(JLPM) install >/dev/null
	touch $@

$(UI_STAMP): $(STAMP) $(LAB)/ui-tests/yarn.lock $(LAB)/ui-tests/package.json
	cd $(LAB)/ui-tests && $(JLPM) install >/dev/null
	touch $@

# Rebuilt only when the sources are newer than the build `pip install -e` made.
$(LAB_BUILT): $(LAB_SRC) | $(NODE_STAMP)
	cd $(LAB) && $(JLPM) build >/dev/null

## demo: set everything up and run the quick start on the embedded local backend
demo: $(STAMP)
	NEO_HOME=$${NEO_HOME:-$(CURDIR)/.neo-home} $(BIN)/python examples/demo.py

## lint: ruff (lint + format check), mypy, and the sidebar's stylelint + prettier + eslint
lint: $(STAMP) lint-js
	$(BIN)/ruff check jupyter_neo server tests bench examples
	$(BIN)/ruff format --check jupyter_neo server tests bench examples
	$(BIN)/mypy
	$(BIN)/mypy --python-version 3.10 --strict server/neo_agent

lint-js: $(NODE_STAMP)
	cd $(LAB) && $(JLPM) lint:check

## jest: the sidebar's unit tests
jest: $(NODE_STAMP)
	cd $(LAB) && $(JLPM) test --silent

fmt: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check --fix jupyter_neo server tests bench examples
	$(BIN)/ruff format jupyter_neo server tests bench examples
	cd $(LAB) && $(JLPM) lint

## test: lint first, then jest, then every pytest test (the browser test included), on
## PYTEST_WORKERS processes: the real engines' tests in one worker (tests/conftest.py's scheduler)
PYTEST_WORKERS ?= 2
test: deps k8s-harness lint jest $(LAB_BUILT) $(UI_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .neo-home .pytest_cache .mypy_cache .ruff_cache test-artifacts \
	  $(LAB)/node_modules $(LAB)/ui-tests/node_modules $(LAB)/lib jupyter_neo/labextension
