# flashanim: the two commands are `make video` and `make test`; each sets up what it
# needs first (system libraries via apt-get when run as root, a virtual environment
# with the Python packages).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flashanim-installed
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all setup test test-gpu video preview slides talk talk-slides bench bench-render gpu-trace lint clean help

help:
	@echo "make video        render both cuts at 1080p60 into media/ (sets up first)"
	@echo "make talk         the talk cut (six clips, cross-faded) at 1080p60 into media/talk"
	@echo "make preview      both cuts at low quality, fast"
	@echo "make slides       the deep dive as one HTML slide deck in media/slides (low quality)"
	@echo "make talk-slides  the talk cut as one offline HTML deck with its speaker notes"
	@echo "make test         run the test suite (sets up first)"
	@echo "make bench        kernel benchmark (needs a CUDA GPU)"
	@echo "make gpu-trace    record the GPU schedule traces (needs a CUDA GPU)"
	@echo "make bench-render per-scene render speed of make preview (QUALITY=high: make video)"
	@echo "make lint         ruff"

$(STAMP): pyproject.toml tools/setup.sh
	@bash tools/setup.sh $(VENV)
	@touch $@

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --durations=15 $(PYTEST_ARGS)

test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu -v $(PYTEST_ARGS)

# both cuts in one set of jobs (longest renders first across both; one render
# server imports Manim once for all of them), then both joins
video: $(STAMP)
	$(PY) -m flashanim.talk --quality high --jobs $(JOBS) --with-cut

# the talk cut: QUALITY=low for a fast look
talk: $(STAMP)
	$(PY) -m flashanim.cut --quality $(or $(QUALITY),high) --jobs $(JOBS)

preview: $(STAMP)
	$(PY) -m flashanim.talk --quality low --jobs $(JOBS) --with-cut

slides: $(STAMP)
	$(PY) -m flashanim.cli slides --all --quality $(or $(QUALITY),low) -o media/slides

talk-slides: $(STAMP)
	$(PY) -m flashanim.cli slides --cut talk --quality $(or $(QUALITY),low) -o media/slides/talk

bench:
	python3 bench/bench_attention.py --out media/bench

# what `make preview` does (QUALITY=high: `make video`), with the speed table
bench-render: $(STAMP)
	$(PY) -m flashanim.talk --quality $(or $(QUALITY),low) --jobs $(JOBS) --with-cut --bench

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf media/videos media/images media/texts media/talk .pytest_cache

gpu-trace:
	python3 bench/record_gpu_schedule.py --out media/traces
