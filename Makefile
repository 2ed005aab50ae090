# The two set-up commands are `make demo` and `make test`; both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test proto bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash examples/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

proto: $(STAMP)
	$(BIN)/python tools/genproto.py

# The benchmarks: dask is the peer (the 'bench' extra); the real-text input needs Debian's
# python3.11-doc, linux-doc-6.1 and bible-kjv packages (bench/wordcount.py says so if missing).
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/dfs_throughput.py --repeat 3
	$(BIN)/python bench/wordcount.py --repeat 3

clean:
	rm -rf $(VENV) .minijet
