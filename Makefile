# The two set-up commands of the README: `make demo` and `make test`.
# Each creates its own virtualenv (.venv) on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Agent CLIs that tests/agents drive as real clients, installed once into .tools/ (gitignored)
# when npm is there. Without npm, or when the install fails (offline), `make test` still runs
# and those tests skip (they fail instead under THRIFTY_REQUIRE_SERVICES=1, as in CI).
CLAUDE_CODE_VERSION ?= 2.1.332
CODEX_VERSION ?= 0.171.0
TOOLS ?= .tools
CLAUDE_STAMP := $(TOOLS)/.claude-code-$(CLAUDE_CODE_VERSION)
CODEX_STAMP := $(TOOLS)/.codex-$(CODEX_VERSION)
NPM := $(shell command -v npm 2>/dev/null)
AGENT_CLIS := $(if $(NPM),$(CLAUDE_STAMP) $(CODEX_STAMP))

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(CLAUDE_STAMP):
	@mkdir -p $(TOOLS)
	@echo "make: installing Claude Code $(CLAUDE_CODE_VERSION) into $(TOOLS)/ (once)"
	@if $(NPM) install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error --fetch-retries=1 \
	      @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) >$(TOOLS)/npm-claude-code.log 2>&1 \
	    && $(TOOLS)/node_modules/.bin/claude --version >/dev/null 2>&1; then touch $@; \
	  else echo "make: Claude Code not installed (see $(TOOLS)/npm-claude-code.log); tests/agents will skip"; fi

$(CODEX_STAMP):
	@mkdir -p $(TOOLS)
	@echo "make: installing Codex CLI $(CODEX_VERSION) into $(TOOLS)/ (once)"
	@if $(NPM) install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error --fetch-retries=1 \
	      @openai/codex@$(CODEX_VERSION) >$(TOOLS)/npm-codex.log 2>&1 \
	    && $(TOOLS)/node_modules/.bin/codex --version >/dev/null 2>&1; then touch $@; \
	  else echo "make: Codex CLI not installed (see $(TOOLS)/npm-codex.log); tests/agents/test_codex.py will skip"; fi

demo: $(STAMP)
	$(VENV)/bin/thrifty demo

test: $(STAMP) $(AGENT_CLIS)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
