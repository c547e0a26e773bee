# Two commands on a fresh machine with python3 and make:  make run  |  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install bytecode run demo demo-ilink test test-faults bench clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	# the `geekai` command (.venv/bin/geekai bot status), running this checkout's code
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) bytecode  ## only set up (.venv, the packages, the `geekai` command), e.g. for deploy/geekai.service

# pip compiles the packages it installs, not this checkout: where bytecode is not written at run
# time (PYTHONDONTWRITEBYTECODE, a checkout the service's user cannot write), every start would
# compile geekai's modules again, about a fifth of the time to the first /readyz (docs/PERFORMANCE.md).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q app.py geekai

run: $(STAMP) bytecode  ## set up and start the service on http://127.0.0.1:5000
	$(BIN)/python app.py

demo: $(STAMP) bytecode  ## the same, with the bot logging in to the built-in WeChat emulator
	$(BIN)/python app.py --demo

demo-ilink: $(STAMP) bytecode  ## the same against a built-in iLink emulator (Tencent's official bot API)
	$(BIN)/python app.py --demo ilink

test: $(STAMP) bytecode  ## set up and run the tests: the main suite, then the fault suite
	$(BIN)/python -m pytest --ignore=tests/faults
	$(BIN)/python -m pytest tests/faults

test-faults: $(STAMP) bytecode  ## only the fault suite (real app.py processes against the fake servers)
	$(BIN)/python -m pytest tests/faults

bench: $(STAMP) bytecode  ## run every benchmark (a few minutes, on a quiet machine) into docs/PERFORMANCE.md
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
