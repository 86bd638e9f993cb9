# make run: a demo shop on 127.0.0.1:8000 with SQLite and a broker that needs no server.
# make test: lint, import contracts and the whole suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set).
PY := .venv/bin/python
PYTHON ?= python3

.PHONY: run test lint venv bench clean

venv: .venv/.installed

.venv/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

run: venv
	bash scripts/demo.sh

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/checkout_pay.py

clean:
	rm -rf var .pytest_cache .ruff_cache
