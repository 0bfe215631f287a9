# Both targets create (or reuse) the local virtual environment .venv and run offline on the CPU.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TINY_SMOLVLM := $(CURDIR)/lerobot_grids/assets/tiny_smolvlm
# Every demo run writes to a new folder: nothing recorded or trained is ever overwritten.
DEMO_DIR := outputs/demo/$(shell date +%Y%m%d-%H%M%S)

.PHONY: install test demo

install: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

test: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests

demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo-dataset --root $(DEMO_DIR)/dataset
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-train --config_path=policies/smolvla_grids_cpu_demo.json \
		--policy.vlm_model_name=$(TINY_SMOLVLM) \
		--dataset.repo_id=local/so100_grids_demo --dataset.root=$(DEMO_DIR)/dataset \
		--output_dir=$(DEMO_DIR)/train
	@echo "Checkpoint: $(DEMO_DIR)/train/checkpoints/last/pretrained_model"
