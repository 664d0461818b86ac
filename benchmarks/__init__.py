"""Benchmarks: each prints figures; see benchmarks/README.md for the commands and results."""
