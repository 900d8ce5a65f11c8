# celops: `make test` from a fresh clone installs what it needs and runs every test;
# `make demo` shows the tools on a throwaway Redis and worker.

VENV   ?= .venv
PY     := $(VENV)/bin/python
BATS   := node_modules/bats/bin/bats

.PHONY: test pytest bats demo docs bench brokers install clean

install: $(VENV)/.installed

# compat mode: a plain .pth entry, not an import hook, and bytecode compiled up
# front (even under PYTHONDONTWRITEBYTECODE): both are start-up time.
$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	$(PY) -m compileall -q celops
	touch $@

$(BATS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

brokers:
	scripts/ensure-brokers.sh

test: brokers install $(BATS)
	$(MAKE) pytest bats

# pytest's status 5 means "no tests collected": not a failure of the suite itself.
pytest: install
	$(PY) -m pytest; status=$$?; [ $$status -eq 5 ] && status=0; exit $$status

bats: install $(BATS)
	$(BATS) --print-output-on-failure tests/bats

docs: install
	$(PY) scripts/gen_docs.py

demo: install
	scripts/demo.sh

bench: brokers install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .demo
