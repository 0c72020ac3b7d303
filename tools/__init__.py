"""Maintainer tools: the benchmark (`bench.py`), the reproduction report (`reproduce.py`) and linear
probes of a frozen representation (`probe.py`)."""
