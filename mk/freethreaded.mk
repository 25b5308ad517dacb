# The free-threaded CPython 3.13t track (PEP 703): where colored callbacks run pure-Python code in
# parallel. Nothing here is a prerequisite of `make test`/`make setup` on 3.11.
#   make freethreaded               build CPython 3.13t + its venv into build/py313t/ (reused when present)
#   make test-freethreaded          runtime + web server tests under 3.13t with PYTHON_GIL=0
#   make test-freethreaded-stress   the stress tests FT_STRESS_RUNS times in a row under 3.13t
#   make freethreaded-probe         pure-Python colored work, 1 vs 2 workers, on 3.11 and 3.13t
FT_DIR          := build/py313t
FT_PY           := $(FT_DIR)/venv/bin/python
FT_TEST_PATHS   := $(wildcard runtime/tests apps/webserver/tests)
FT_STRESS_RUNS  ?= 10
FT_STRESS_K     ?= stress

.PHONY: freethreaded test-freethreaded test-freethreaded-stress freethreaded-probe
freethreaded:
	@tools/freethreaded/build.sh

test-freethreaded: freethreaded
	PYTHON_GIL=0 $(FT_PY) -m pytest -q -p no:cacheprovider $(FT_TEST_PATHS)

test-freethreaded-stress: freethreaded
	@tools/freethreaded/stress.sh $(FT_PY) $(FT_STRESS_RUNS) '$(FT_STRESS_K)' $(FT_TEST_PATHS)

freethreaded-probe: freethreaded setup
	$(PY) -m tools.freethreaded.purepython_probe
	PYTHON_GIL=0 $(FT_PY) -m tools.freethreaded.purepython_probe
