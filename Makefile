# Two commands on a fresh machine:
#   make run    set up .venv, simulate the mini log if none is given, train, evaluate, score, serve
#   make test   set up .venv and run the test suite
PY := .venv/bin/python
SPARKIFY := .venv/bin/sparkify
DEFAULT_EVENTS := data/mini_sparkify_event_data.json
EVENTS ?= $(DEFAULT_EVENTS)
MODEL ?= model/classifier
HOST ?= 127.0.0.1
PORT ?= 8001
TRAIN_ARGS ?=

.PHONY: setup run events train score serve test clean

setup:
	@bash scripts/setup.sh

# Simulate the mini log only when no log was given; a given log that is missing is an error.
events: setup
	@if [ -e "$(EVENTS)" ]; then echo "run: using the event log $(EVENTS)"; \
	elif [ "$(EVENTS)" = "$(DEFAULT_EVENTS)" ]; then \
	  echo "run: no event log given; simulating the mini preset into $(EVENTS)"; \
	  $(SPARKIFY) simulate --preset mini --out "$(EVENTS)"; \
	else echo "run: event log $(EVENTS) not found" >&2; exit 2; fi

train: events
	$(SPARKIFY) train "$(EVENTS)" --model "$(MODEL)" --scores "$(MODEL)/scores.csv" $(TRAIN_ARGS)

score: setup
	$(SPARKIFY) score "$(EVENTS)" --model "$(MODEL)" --out "$(MODEL)/scores.csv"

serve: setup
	$(SPARKIFY) serve --model "$(MODEL)" --host "$(HOST)" --port "$(PORT)"

# train also scores the log's active users (--scores), so run needs no separate score step
run: train serve

test: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest --durations=15

clean:
	rm -rf model/classifier reports/*.html spark-warehouse
