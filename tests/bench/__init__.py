"""Benchmarks: `make bench` (the whole path, `python -m tests.bench`) and `make bench-stages`."""
