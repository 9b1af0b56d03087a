"""Benchmarks that print tables (not timed tests). See ``bench/README.md``."""
