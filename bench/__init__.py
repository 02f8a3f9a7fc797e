"""Benchmarks and the soak, run by hand. The tests import ``bench.soak`` and ``bench.churn``."""
