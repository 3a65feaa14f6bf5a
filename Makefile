# Two commands on a fresh Debian machine with Python 3.11:
#   make demo   # set everything up, generate built-in data, train, print per-patient DSC
#   make test   # set up (if needed) and run the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the workbench needs (installed only when missing; needs root):
# Xvfb and the X/GL libraries Qt 6 (PyQt6) needs for napari on a virtual screen (its xcb
# platform plugin needs libxcb-cursor0; its Core links GLib), Chromium for static figure
# export (kaleido) and the browser tests, and python3-venv only when this Python cannot
# create a virtualenv (Debian's system Python).
QT_X11_PACKAGES := libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 \
	libdbus-1-3 libfontconfig1 libglib2.0-0 fonts-dejavu-core
APT_PACKAGES := xvfb xauth chromium $(QT_X11_PACKAGES) \
	$(shell $(PYTHON) -c "import ensurepip, venv" 2>/dev/null || echo python3-venv)

.PHONY: setup demo test lint lab notebooks clean system-deps

setup: $(STAMP)

system-deps:
	@bash .ci/apt-install $(APT_PACKAGES)

$(STAMP): pyproject.toml environment.yml .ci/apt-install
	@$(MAKE) --no-print-directory system-deps
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	# torch first, on its own: pip's configuration here finds the CPU wheel on local disk; elsewhere
	# PyPI's Linux wheel is the multi-GB CUDA build (README: "Which torch build").
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/workbench demo

test: setup
	$(BIN)/python -m pytest -q

# ruff, configured in pyproject.toml: lint and the formatting check (.ci/run runs it after the tests)
lint: setup
	$(BIN)/ruff check workbench tests
	$(BIN)/ruff format --check workbench tests

# The notebooks name the kernelspec "python3": (re)install it inside the venv, pointing at the
# venv's Python, so they open on the workbench kernel; then check the ipywidgets extension
# (sliders, plotly FigureWidget) is there before starting. --allow-root: running as root.
lab: setup
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (workbench)" >/dev/null
	@$(BIN)/jupyter labextension list 2>&1 | grep -q "@jupyter-widgets/jupyterlab-manager.*enabled" || \
		{ echo "error: the ipywidgets JupyterLab extension is not enabled (pip install jupyterlab_widgets)"; exit 1; }
	$(BIN)/jupyter lab --allow-root --notebook-dir=notebooks

# Each notebook's source is its text twin notebooks/NN_name.py (Jupytext percent format, paired by
# notebooks/jupytext.toml). Regenerate every .ipynb from its .py: clear outputs and execution
# counts (a notebook saved from JupyterLab has them), then rewrite the cells from the .py;
# --update keeps the cell ids of the .ipynb, so a second run changes nothing.
notebooks: setup
	$(BIN)/jupyter nbconvert --log-level=WARN --clear-output --inplace $(wildcard notebooks/*.ipynb)
	$(BIN)/jupytext --quiet --update --use-source-timestamp --to ipynb $(wildcard notebooks/*.py)

clean:
	rm -rf $(VENV) runs build *.egg-info
