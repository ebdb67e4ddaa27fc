# The two commands the README starts with: `make demo` and `make test`.
PY := .venv/bin/python
OS := .venv/bin/openscholar
QUESTION ?= Does vitamin D supplementation improve bone mineral density?

.PHONY: setup demo test test-all datastore

setup:
	bash scripts/setup.sh

datastore: setup
	@if $(OS) datastore info --fast >/dev/null 2>&1; then echo "default datastore is ready"; \
	else $(OS) datastore build --default; fi

demo: datastore
	$(OS) ask "$(QUESTION)" --no-feedback --markdown

test: setup
	bash scripts/test.sh

test-all: setup
	bash scripts/test.sh -m "slow or not slow"
