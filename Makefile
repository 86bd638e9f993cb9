# make run: a demo shop on 127.0.0.1:8000 with SQLite and a broker that needs no server.
# make test: lint, import contracts and the whole suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set).
PY := .venv/bin/python
PYTHON ?= python3

.PHONY: run test lint venv bench clean messages

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

# Chinese catalogs: ours (locale/) and the admin theme's, which ships none (locale_vendor/unfold/, extracted from
# the installed django-unfold). Translate the empty and fuzzy entries, then run `make messages` again to compile.
UNFOLD_DIR = $(shell $(PY) -c "import os, unfold; print(os.path.dirname(unfold.__file__))")
messages: venv
	DEBUG=1 $(PY) manage.py makemessages -l zh_Hans --no-obsolete --ignore=.venv --ignore=tests --ignore=bench --ignore=var --ignore=locale_vendor
	rm -rf var/unfold-messages && mkdir -p var && cp -r $(UNFOLD_DIR) var/unfold-messages
	mkdir -p var/unfold-messages/locale/zh_Hans/LC_MESSAGES
	cp locale_vendor/unfold/zh_Hans/LC_MESSAGES/django.po var/unfold-messages/locale/zh_Hans/LC_MESSAGES/
	cd var/unfold-messages && DJANGO_SETTINGS_MODULE= ../../.venv/bin/django-admin makemessages -l zh_Hans --no-obsolete
	cp var/unfold-messages/locale/zh_Hans/LC_MESSAGES/django.po locale_vendor/unfold/zh_Hans/LC_MESSAGES/
	rm -rf var/unfold-messages
	DEBUG=1 $(PY) manage.py compilemessages --ignore=.venv --ignore=var

clean:
	rm -rf var .pytest_cache .ruff_cache
