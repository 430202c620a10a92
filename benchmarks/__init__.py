"""Benchmarks of trusted-issuer: run each as ``python -m benchmarks.<name>``; results go to ``results/``."""
