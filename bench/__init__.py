"""Benchmarks (``python -m bench.NAME``): each prints progress lines and, last, one JSON line of
figures. See ``bench/README.md``."""
