# Both targets create (or reuse) the local virtual environment .venv and run offline on the CPU.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# Every demo run writes to a new folder: nothing recorded or trained is ever overwritten.
DEMO_DIR := outputs/demo/$(shell date +%Y%m%d-%H%M%S)

# LeRobot 0.6 (Python >= 3.12) in its own environment, for make test-lerobot06.
VENV06 := .venv-lerobot06
PYTHON06 := $(VENV06)/bin/python
LEROBOT06 := lerobot[smolvla,pi,feetech,intelrealsense,async,dataset,training,hardware,viz]==0.6.1

.PHONY: install test test-lerobot06 lint demo demo-quick demo-quick-installed demo-seeds demo-metaworld pretrain

install: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $@

# Two workers, each test file on one of them (its module fixtures made once): most tests wait on LeRobot commands
# they start, so the two cores stay busy.
PYTEST_WORKERS := -n 2 --dist loadfile

test: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest $(PYTEST_WORKERS) tests

# The whole suite again against LeRobot 0.6.1, installed first and then this package on top (as a user of
# LeRobot 0.6 installs it). LeRobot 0.6 declares Python >= 3.12; on an older Python (these machines and CI
# have 3.11) it is installed with --ignore-requires-python and tools/lerobot_py311.py rewrites the five
# declarations of its source that use Python 3.12's type-parameter syntax (nothing else); on Python 3.12+
# LeRobot is installed as it is and the script does nothing.
$(VENV06)/.installed: setup.cfg pyproject.toml tools/lerobot_py311.py
	python3 -m venv $(VENV06)
	$(PYTHON06) -m pip install --quiet --upgrade pip
	$(PYTHON06) -m pip install --quiet --ignore-requires-python --prefer-binary '$(LEROBOT06)'
	$(PYTHON06) tools/lerobot_py311.py
	$(PYTHON06) -m pip install --quiet --ignore-requires-python -e '.[test]'
	touch $@

test-lerobot06: $(VENV06)/.installed
	HF_HUB_OFFLINE=1 $(PYTHON06) -m pytest $(PYTEST_WORKERS) tests

# LeRobot's ruff settings (pyproject.toml); the same checks as the pre-commit hooks.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo --output-dir $(DEMO_DIR)

demo-quick: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo --quick --output-dir $(DEMO_DIR)

# The same from the wheel, installed beside this LeRobot in a new environment and run outside the checkout (CI).
demo-quick-installed: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PYTHON) tools/run_installed.py lerobot-grids-demo --quick --output-dir $(CURDIR)/$(DEMO_DIR)

# The comparison over three training seeds: dense, GridS with the paper's predictor and the new ones (attention,
# attention+instruction) at K = 16, 4, 1, GridS inside the vision tower at K = 16 (split after layer 1 of the tiny
# tower's 2, and before and after it), and the top-k / random baselines at K = 16 (45 trainings, ~5.5 h on 2 CPU
# cores). Interrupted? make demo-seeds RESUME=outputs/demo/<date-time> continues it (policies added to the list are
# trained in a resumed run too).
DEMO_SEEDS_MODELS := dense grids_k16 instructed_k16 topk_k16 random_k16 attention_k16 instructed_k4 intower_k16 \
	grids_k4 attention_k4 grids_k1 instructed_k1 attention_k1 intower_l0_k16 intower_l2_k16
demo-seeds: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo --seeds 1000 1001 1002 --models $(DEMO_SEEDS_MODELS) \
		--output-dir $(or $(RESUME),$(DEMO_DIR)) $(if $(RESUME),--resume)

# The same comparison on Meta-World (button-press, plate-slide, door-open, window-open; LeRobot's env rendered for a
# CPU): dense, GridS with the paper's predictor and with attention+instruction at K = 16, 4, 1 (and at K = 4 with the
# wider attention prior), top-k and random at K = 16, three training seeds, seed by seed (30 trainings, about 20 h on 2
# CPU cores). Interrupted? make demo-metaworld RESUME=outputs/demo/<date-time> continues it; a run stored with --store
# continues from a copy of its folder the same way (its demonstrations are recorded again).
DEMO_METAWORLD_MODELS := dense grids_k16 instructed_k16 topk_k16 random_k16 grids_k4 instructed_k4 grids_k1 instructed_k1 \
	instructed_share_k4
demo-metaworld: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-demo --benchmark metaworld --seeds 1000 1001 1002 \
		--models $(DEMO_METAWORLD_MODELS) --output-dir $(or $(RESUME),$(DEMO_DIR)) $(if $(RESUME),--resume)

# Writes the pretrained base policy that make demo starts from (grounded tiny SmolVLM, action expert
# pretrained to reach; shipped in lerobot_grids/assets/grids_tabletop_smolvla) anew, into a new folder;
# ~31 min on 2 CPU cores.
pretrain: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lerobot-grids-tabletop-pretrain --output-dir outputs/pretrain/$(shell date +%Y%m%d-%H%M%S)
