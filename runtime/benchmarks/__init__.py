"""Benchmarks of the runtime itself (scripts that write CSVs; never run as tests)."""
