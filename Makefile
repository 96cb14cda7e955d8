# Two commands on a fresh machine:  `make run`  and  `make test`.
# Both create .venv if missing and install the pinned stack first (once).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
WHEELS := .wheels
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install run test clean

# The install's own output (pip, the wheel fetch, the glibc patch) goes to $(INSTALL_LOG); its end
# is shown if a step fails.
INSTALL_LOG := $(VENV)/install.log
$(STAMP): setup.py requirements/constraints.txt tools/glibc_compat/glibc_compat.py tools/glibc_compat/shim.cc
	@mkdir -p $(VENV)
	@echo "installing the pinned stack into $(VENV) (a few minutes the first time; log: $(INSTALL_LOG))"
	@( set -e; \
	  test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  : "TFX's ml-metadata and TFDV wheels need glibc 2.39: fetch them (only if needed) ..."; \
	  $(PY) tools/glibc_compat/glibc_compat.py fetch-wheels $(WHEELS); \
	  $(PY) -m pip install --disable-pip-version-check -q --find-links $(WHEELS) \
		-c requirements/constraints.txt -e ".[tfx,dev]"; \
	  : "... and make their native extensions load on older glibc (no-op on glibc >= 2.39)"; \
	  $(PY) tools/glibc_compat/glibc_compat.py patch; \
	  $(PY) tools/glibc_compat/glibc_compat.py check ) > $(INSTALL_LOG) 2>&1 \
	  || (tail -n 30 $(INSTALL_LOG); echo "install failed; full log: $(INSTALL_LOG)"; exit 1)
	@touch $(STAMP)

install: $(STAMP)

# The main job on the embedded default data (MovieLens-100K): the TFX pipeline.
run: install
	@$(PY) pipelines/local_runner.py --model sasrec --epochs 200

# Debian's Chromium, for the report's browser test (tests/test_report.py); CI runs as root.
BROWSER := /usr/bin/chromium
$(BROWSER):
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "warning: could not install chromium: the report's browser test is skipped outside CI"

# One test worker per core (pytest-xdist): much of the suite's time is single-threaded Python (TFX,
# Beam, graph tracing), so on a 2-core machine two workers took 1,665 s where one had taken 2,940 s
# (that serial run still had the pipeline's SIGKILL test at its old size, about a minute longer).
test: install $(BROWSER)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist worksteal tests

clean:
	rm -rf $(VENV) $(WHEELS) runs pipeline_root
