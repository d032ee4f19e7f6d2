"""Benchmarks (not tests): `python -m bench` (what `make bench` runs)."""
