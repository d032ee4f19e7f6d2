"""Benchmarks (not tests): `python -m bench` (what `make bench` runs). Process helpers and the
workload come from tests/support/."""
