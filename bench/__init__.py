"""Benchmarks, run by hand (`python -m bench`), never as timed tests; see BENCHMARKS.md."""
