# One-command set-up: every target that runs Python first creates or updates .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-install only when the requirements change; the stamp is a copy of what was installed.
STAMP := $(VENV)/.installed-requirements.txt
PYTEST_ARGS ?=
# vision_msgs (for ~/anomaly_detections) is not on PyPI. A ROS 2 install has it already; here
# the prebuilt copy in ../shared/vision_msgs serves the tests and the demo when present.
VISION_MSGS ?= $(abspath ../shared/vision_msgs/tree)
ifneq ($(wildcard $(VISION_MSGS)/lib/python3.11/site-packages/vision_msgs),)
export PYTHONPATH := $(VISION_MSGS)/lib/python3.11/site-packages$(if $(PYTHONPATH),:$(PYTHONPATH))
export LD_LIBRARY_PATH := $(VISION_MSGS)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
export AMENT_PREFIX_PATH := $(VISION_MSGS)$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))
endif

.PHONY: venv test lint bench reproduce demo clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -r requirements.txt
	# The package itself, editable: its console scripts (perception_node, infer_image,
	# dataset_to_bag, play_bag, eval_stream, export_onnx) and `python -m dense_ood_ros...`
	# work from any directory.
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	cp requirements.txt $(STAMP)

lint: venv
	$(PY) -m pytest test/test_linters.py

# The whole suite, linters included (test/test_linters.py runs flake8 and pydocstyle).
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The main job: demo checkpoint -> synthetic-world bag -> node -> stream evaluation -> demo_out/.
demo: venv
	$(PY) demo/run_demo.py

# Every benchmark, then one summary line each (figure, goal, verdict); GPU figures with CUDA.
bench: venv
	$(PY) benchmarks/run_all.py

# Table 3 in miniature: 3 seeds x 4 variants on the synthetic world, two runs at a time
# (about 2 hours on 2 CPU cores; interrupted runs resume).
reproduce: venv
	$(PY) benchmarks/reproduce_table3.py

clean:
	rm -rf build install log .pytest_cache
