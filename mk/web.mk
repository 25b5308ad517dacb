# The web server (apps/webserver/): serve, load, benchmark, test.
#   make web-serve            serve a generated file set on http://127.0.0.1:8080/ (WEB_PORT=8081,
#                             WEB_ARGS="--colors on --workers 2")
#   make web-files            generate the benchmark's file set into build/webfiles/
#   make web-wrk              a 10 s wrk run (mix.lua) against a server on WEB_URL (default: WEB_PORT's)
#   make web-bench            requests/s of ours (colors off/on, N-copy), nginx, Apache, aiohttp on 1..N CPUs
#                             -> artifact/results/web_throughput.csv (QUICK=1: about 55 s; else about 6 min)
#   make web-test             the web server's tests
# wrk, nginx, apache2 and curl come from Debian through `make setup` (apt, only when missing).
WEB_FILES ?= build/webfiles
WEB_ARGS  ?= --colors off
WEB_PORT  ?= 8080
WEB_URL   ?= http://127.0.0.1:$(WEB_PORT)

.PHONY: web-files web-serve web-wrk web-bench web-test
$(WEB_FILES)/paths.txt: apps/webserver/make_files.py | setup
	$(PY) -m apps.webserver.make_files $(WEB_FILES)

web-files: $(WEB_FILES)/paths.txt

web-serve: setup $(WEB_FILES)/paths.txt
	$(PY) -m apps.webserver --root $(WEB_FILES) --port $(WEB_PORT) $(WEB_ARGS)

web-wrk: setup $(WEB_FILES)/paths.txt
	wrk -t2 -c32 -d10s -s apps/webserver/wrk/mix.lua $(WEB_URL) -- $(WEB_FILES)/paths.txt

web-bench: setup
	$(PY) -m apps.webserver.bench $(if $(QUICK),--quick)

web-test: setup
	$(PY) -m pytest -q apps/webserver/tests

bench: web-bench
