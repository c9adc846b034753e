"""Benchmarks of the embedded stack that ``make run`` starts (see docs/embedded.md)."""
