# The runtime's own benchmarks (scripts that write CSVs under artifact/results/).
.PHONY: bench-runtime
bench-runtime: setup
	$(PY) -m runtime.benchmarks.dispatch $(if $(QUICK),--quick)
	$(PY) -m runtime.benchmarks.speedup $(if $(QUICK),--quick)

bench: bench-runtime
