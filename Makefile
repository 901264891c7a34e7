# Two commands on a fresh machine:
#   make run    set up .venv, simulate the mini log if none is given, train, evaluate, serve
#   make test   set up .venv and run the test suite
PY := .venv/bin/python
SPARKIFY := .venv/bin/sparkify
EVENTS ?= data/mini_sparkify_event_data.json
MODEL ?= model/classifier
PORT ?= 8001

.PHONY: setup run simulate train serve test bench clean

setup:
	@bash scripts/setup.sh

$(EVENTS):
	@$(MAKE) --no-print-directory setup
	$(SPARKIFY) simulate --preset mini --out $(EVENTS)

simulate: setup $(EVENTS)

train: setup $(EVENTS)
	$(SPARKIFY) train $(EVENTS) --model $(MODEL)

serve: setup
	$(SPARKIFY) serve --model $(MODEL) --port $(PORT)

run: simulate train serve

test: setup
	$(PY) -m pytest

clean:
	rm -rf model/classifier reports/*.html spark-warehouse
