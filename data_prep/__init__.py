"""Data preparation: task files in the TTL format from synthetic or MovieLens data (`prepare_data.py`)."""
