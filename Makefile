# posehook: `make run` starts the whole service, `make test` runs the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: run test lint clean

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	@cp requirements.txt $(STAMP)

# Embedded Redis (AOF on, in $POSEHOOK_DATA_DIR/redis, by default ./data/redis) unless
# REDIS_URL is set; private URLs allowed for local development (a photo served from your own
# machine), said out loud.
# Shorthands: PROVIDER, PUBLIC_BASE_URL, ENGINE set their POSEHOOK_ settings
# (PROVIDER=fal FAL_KEY=... PUBLIC_BASE_URL=https://... make run puts posehook in front of fal).
# FAL_HOSTS=1 also serves fal's own hosts over TLS on POSEHOOK_FAL_HOST_BIND (127.0.0.1:8443)
# for fal's Python client; without POSEHOOK_FAL_HOST_CERTFILE/KEYFILE it makes a development
# CA and certificate in $POSEHOOK_DATA_DIR/fal-hosts and prints the variables the client needs.
run: $(STAMP) node_modules/.installed
	@mkdir -p "$${POSEHOOK_DATA_DIR:-data}"
	@if [ -z "$$REDIS_URL" ]; then \
	  echo "posehook: no REDIS_URL, starting the embedded Redis on 127.0.0.1:$${POSEHOOK_REDIS_PORT:-6380} (data in $${POSEHOOK_DATA_DIR:-data}/redis)"; \
	  export REDIS_URL=redis://127.0.0.1:$${POSEHOOK_REDIS_PORT:-6380}/0; skip="falhosts"; \
	else skip="redis|falhosts"; fi; \
	procs=$$(sed -n 's/^\([a-z]*\):.*/\1/p' Procfile | grep -vxE "$$skip" | tr '\n' ' '); \
	if [ -n "$$FAL_HOSTS$$POSEHOOK_FAL_HOST_BIND" ]; then \
	  export POSEHOOK_FAL_HOST_BIND=$${POSEHOOK_FAL_HOST_BIND:-127.0.0.1:8443}; \
	  if [ -z "$$POSEHOOK_FAL_HOST_CERTFILE" ]; then \
	    certs=$$($(BIN)/python -m app.devcert "$${POSEHOOK_DATA_DIR:-data}/fal-hosts" $$POSEHOOK_FAL_HOST_BIND) || exit 1; \
	    eval "$$certs"; fi; \
	  procs="$$procs falhosts"; fi; \
	if [ -n "$$PROVIDER" ]; then export POSEHOOK_PROVIDER="$$PROVIDER"; fi; \
	if [ -n "$$PUBLIC_BASE_URL" ]; then export POSEHOOK_PUBLIC_BASE_URL="$$PUBLIC_BASE_URL"; fi; \
	if [ -n "$$ENGINE" ]; then export POSEHOOK_ENGINE="$$ENGINE"; fi; \
	if [ -z "$$POSEHOOK_ALLOW_PRIVATE_URLS" ]; then \
	  echo "posehook: POSEHOOK_ALLOW_PRIVATE_URLS=1 for development: URLs on private and loopback addresses are accepted"; \
	  export POSEHOOK_ALLOW_PRIVATE_URLS=1; fi; \
	export REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:$${POSEHOOK_REDIS_PORT:-6380}/0}; \
	exec $(BIN)/python -m app.procfile start -f Procfile $$procs

# The pinned npm packages: swagger-ui-dist (served at /docs), @fal-ai/client and
# playwright-core (tests). None needs an install script, so none runs.
node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error --ignore-scripts
	@touch $@

# The whole suite against a real Redis (REDIS_URL, else 127.0.0.1:6379, else an embedded one).
# The browser tests need Debian's Chromium; without it they are skipped, and said so last.
test: $(STAMP) node_modules/.installed
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ ! -x /usr/bin/chromium ]; then echo "make test: the browser tests (tests/test_playground.py) did NOT run: /usr/bin/chromium is missing (apt-get install -y chromium)" >&2; fi; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest ran no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache
