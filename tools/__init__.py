"""Maintainer tools: the benchmark (`bench.py`), the reproduction and its report (`reproduce.py`, with its
parts in `reproduction/`), linear
probes of a frozen representation (`probe.py`) and a data folder's size and density (`data_stats.py`)."""
