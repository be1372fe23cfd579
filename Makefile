# medsft: every target creates the virtual environment and installs the project on first use.
PYTHON    ?= python3
VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.medsft-installed
# vLLM's own environment (make setup-vllm): eval, infer and serve run in it when it exists.
VLLM_VENV ?= .venv-vllm
APP_PY    := $(if $(wildcard $(VLLM_VENV)/bin/python),$(VLLM_VENV)/bin/python,$(PY))
export MEDSFT_SHARED ?= $(abspath ../shared)
# Where medsft writes (medsft/paths.py): relative to this folder unless the environment names other folders.
DATA_DIR   := $(or $(MEDSFT_DATA_DIR),data/processed)
OUTPUT_DIR := $(or $(MEDSFT_OUTPUT_DIR),output)

# make data
SRC       ?=
MIX       ?=
NAME      ?=
TOKENIZER ?=
# make train
RECIPE    ?= smoke
NPROC     ?= 1
ACCEL     ?= ddp
RESUME    ?=
ACCEL_ARGS ?=
# make train / eval / infer / demo / serve
MODEL     ?=
BASELINE  ?=
Q         ?=
ARGS      ?=

.PHONY: setup setup-vllm data train eval infer demo serve bench real-shape scale-check gpu-bundle smoke test lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# The CPU wheel of torch first: a bare "torch" requirement would pull a multi-GB CUDA build on CPU boxes.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0" || $(PY) -m pip install torch
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# vLLM pins its own torch and transformers, older than training needs: a separate environment, for CUDA
# machines (docs/training.md). medsft goes in without its dependencies; requirements-vllm.txt lists what runs.
setup-vllm:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -r requirements-vllm.txt
	$(VLLM_VENV)/bin/python -m pip install --no-deps -e .

data: $(STAMP)
	$(PY) -m medsft.cli data $(if $(MIX),--mixture $(MIX)) $(if $(SRC),--src $(SRC)) $(if $(NAME),--name $(NAME)) $(if $(TOKENIZER),--tokenizer $(TOKENIZER)) $(ARGS)

# The smoke recipe reads the converted sample: convert it first when it is missing or older than the sample.
SAMPLE_SPLIT := $(DATA_DIR)/sample/train.jsonl
$(SAMPLE_SPLIT): data/sample/medical_sample.jsonl | $(STAMP)
	$(PY) -m medsft.cli data --src data/sample/medical_sample.jsonl --name sample

# The GRPO smoke recipe reads real MCQ prompt rows: the XMedBench dev questions, which are all XMedBench test
# questions too, so this one conversion turns decontamination off (the smoke's random model is never evaluated).
XMEDBENCH := $(MEDSFT_SHARED)/benchmarks/xmedbench_zh
MCQ_SMOKE_SPLIT := $(DATA_DIR)/mcq_smoke/train.jsonl
$(MCQ_SMOKE_SPLIT): | $(STAMP)
	$(PY) -m medsft.cli data --kind mcq --src $(XMEDBENCH)/dev_zh.json --name mcq_smoke --decontaminate none

# MODEL= replaces the recipe's model_name_or_path (a local folder, a ModelScope id or hf:<id>).
TRAIN_ARGS = --recipe $(RECIPE) $(if $(MODEL),--model_name_or_path $(MODEL)) $(if $(RESUME),--resume) $(ARGS)
train: $(STAMP) $(if $(filter smoke,$(RECIPE)),$(SAMPLE_SPLIT)) $(if $(filter grpo_smoke,$(RECIPE)),$(MCQ_SMOKE_SPLIT))
ifeq ($(NPROC),1)
	$(PY) -m medsft.cli train $(TRAIN_ARGS)
else
	$(VENV)/bin/accelerate launch --config_file recipes/accelerate/$(ACCEL).yaml --num_processes $(NPROC) $(ACCEL_ARGS) \
		-m medsft.train $(TRAIN_ARGS)
endif

eval: $(STAMP)
	$(APP_PY) -m medsft.cli eval $(if $(MODEL),--model $(MODEL)) $(if $(BASELINE),--baseline $(BASELINE)) $(ARGS)

infer: $(STAMP)
	$(APP_PY) -m medsft.cli infer $(if $(MODEL),--model $(MODEL)) $(if $(Q),--question "$(Q)") $(ARGS)

demo: $(STAMP)
	$(PY) -m medsft.cli demo $(if $(MODEL),--model $(MODEL)) $(ARGS)

# OpenAI-compatible API on 127.0.0.1:8000 (docs/serving.md); ARGS="--host 0.0.0.0 --api-key …" to expose it.
serve: $(STAMP)
	$(APP_PY) -m medsft.cli serve $(if $(MODEL),--model $(MODEL)) $(ARGS)

# Speed against the original recipe (benchmarks/, not part of the package): docs/benchmarks.md
bench: $(STAMP)
	$(PY) -m benchmarks.bench $(ARGS)

# Training speed at the real Qwen3-1.7B shape, the original and full_1epoch in alternating processes, and where a
# step's time goes against its floor (~20 GiB of RAM; 43 min for 3 variants x 2 rounds on 2 cores): docs/benchmarks.md
real-shape: $(STAMP)
	$(PY) -m benchmarks.real_shape $(ARGS)

# The whole path at the real Qwen3-1.7B shape, random weights, on CPU: full_1epoch and lora for 2 steps each,
# eval and infer on their final/ (tens of minutes, ~15 GiB of RAM; not part of `make test`): docs/benchmarks.md
scale-check: $(STAMP)
	$(PY) -m benchmarks.scale_check $(ARGS)

# What benchmarks/gpu_check.py needs on a bare CUDA image (no network), downloaded here from PyPI into
# output/gpu_bundle/ (~55 MiB, manifest.json); there: python -m benchmarks.gpu_check --wheels DIR --out DIR
gpu-bundle: $(STAMP)
	$(PY) -m benchmarks.gpu_bundle $(ARGS)

# The offline end-to-end path: sample data -> tiny model training -> evaluation -> demo check.
smoke: $(STAMP)
	$(PY) -m medsft.cli data --src data/sample/medical_sample.jsonl --name sample
	$(PY) -m medsft.cli train --recipe smoke
	$(PY) -m medsft.cli eval --model $(OUTPUT_DIR)/smoke/final --limit 8 --mcq-limit 20 --max-new-tokens 64 --greedy --name smoke
	$(PY) -m medsft.cli demo --model $(OUTPUT_DIR)/smoke/final --check

test: $(STAMP)
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check medsft tests benchmarks
	$(VENV)/bin/ruff format --check medsft tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix medsft tests benchmarks
	$(VENV)/bin/ruff format medsft tests benchmarks

clean:
	rm -rf output data/processed .pytest_cache .ruff_cache swanlog build dist *.egg-info
