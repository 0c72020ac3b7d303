"""Maintainer tools: the benchmark (`bench.py`) and the reproduction report (`reproduce.py`)."""
