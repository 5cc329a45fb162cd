# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both build the virtual environment in .venv first (a few minutes the first time).

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hardmine-installed

.PHONY: install demo dashboard test lint system-deps compose-check format clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The torch pair this machine holds as local files; pyproject admits it.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/hardmine demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

dashboard: install
	$(VENV)/bin/hardmine dashboard

# Debian packages the tests use: docker-compose (validates docker-compose.yml offline, no Docker
# engine needed) and chromium (the dashboard's browser test; Playwright's own download fails
# here). Installed only when missing.
system-deps:
	@for tool in docker-compose chromium; do \
		command -v $$tool >/dev/null 2>&1 && continue; \
		echo "installing $$tool (apt)"; \
		apt-get install -y -qq --no-install-recommends $$tool >/dev/null 2>&1 || \
			{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $$tool; }; \
	done

compose-check: system-deps
	docker-compose -f docker-compose.yml config -q

test: lint compose-check
	$(VENV)/bin/pytest -ra

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) hardmine-demo .pytest_cache .ruff_cache
