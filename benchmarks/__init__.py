"""Benchmark scripts (run them as files: python benchmarks/<script>.py --help)."""
