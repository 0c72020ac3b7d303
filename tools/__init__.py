"""Maintainer tools: the benchmark (`bench.py`), the reproduction report (`reproduce.py`), linear
probes of a frozen representation (`probe.py`) and a data folder's size and density (`data_stats.py`)."""
