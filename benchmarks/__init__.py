"""Benchmark scripts (``python -m benchmarks.<name>``): they write JSON under benchmarks/results/, never assert."""
