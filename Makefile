# Both targets create (or reuse) the local virtual environment .venv and run offline on the CPU.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# Every demo run writes to a new folder: nothing recorded or trained is ever overwritten.
DEMO_DIR := outputs/demo/$(shell date +%Y%m%d-%H%M%S)

.PHONY: install test demo demo-quick pretrain

install: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

test: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest tests

demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo --output-dir $(DEMO_DIR)

demo-quick: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo --quick --output-dir $(DEMO_DIR)

# Writes the pretrained base policy that make demo starts from (grounded tiny SmolVLM, action expert
# pretrained to reach; shipped in lerobot_grids/assets/grids_tabletop_smolvla) anew, into a new folder;
# ~31 min on 2 CPU cores.
pretrain: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-tabletop-pretrain --output-dir outputs/pretrain/$(shell date +%Y%m%d-%H%M%S)
