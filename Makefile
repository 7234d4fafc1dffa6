# The two commands a new user needs: `make demo` and `make test`.
# Both install into .venv first (scripts/install.sh; the mmcv build is cached per machine).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rsbench-installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rsbench demo

# pytest exits 5 when no test is collected; that is not a failure here.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# The quick tier for editing sessions (no multi-process, end-to-end or browser tests); CI runs `make test`.
test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) results/runs .pytest_cache
