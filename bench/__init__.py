"""Benchmarks: one command each, printing their figures (see bench/README.md)."""
