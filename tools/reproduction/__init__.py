"""The paper's comparison on real data and its report (`python tools/reproduce.py`), by job:
`plan` (the experiments, their folders and the archive in results/), `results` (reading the
archived results), `tables` and `figures` (what the report shows), `report` (REPRODUCTION.md)."""
