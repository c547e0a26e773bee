# Two commands on a fresh machine with python3 and make:  make run  |  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo demo-ilink test test-faults bench clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	# the `geekai` command (.venv/bin/geekai bot status), running this checkout's code
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)  ## set up and start the service on http://127.0.0.1:5000
	$(BIN)/python app.py

demo: $(STAMP)  ## the same, with the bot logging in to the built-in WeChat emulator
	$(BIN)/python app.py --demo

demo-ilink: $(STAMP)  ## the same against a built-in iLink emulator (Tencent's official bot API)
	$(BIN)/python app.py --demo ilink

test: $(STAMP)  ## set up and run the tests: the main suite, then the fault suite
	$(BIN)/python -m pytest --ignore=tests/faults
	$(BIN)/python -m pytest tests/faults

test-faults: $(STAMP)  ## only the fault suite (real app.py processes against the fake servers)
	$(BIN)/python -m pytest tests/faults

bench: $(STAMP)  ## run every benchmark (a few minutes, on a quiet machine) into docs/PERFORMANCE.md
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
