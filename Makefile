# Loom: `make run` opens the editor, `make test` runs the whole suite headless.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dist]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) main.py

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m pip install -q threadpoolctl
	$(PY) -m pip install -q torch==2.13.0 || echo "torch not installable here: PyTorch columns skipped"
	$(PY) -m pip install -q torchvision==0.28.0 || echo "torchvision not installable here: the ONNX real-model rows are skipped"
	$(PY) bench/run.py
	$(PY) bench/gpu_bench.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/editor_bench.py

clean:
	rm -rf $(VENV) runs .pytest_cache
