"""The six task files in the TTL format (docs/design.md section 2): their names, line encoding, atomic writes.

A line is 100 source tokens, oldest first and left-padded with `0`, then for T2-T6 `,,` and the
targets (T2/T3) or the one class label (T4-T6), comma-separated.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SEQ_LEN = 100


def token_table(tokens, suffix: bytes = b"") -> np.ndarray:
    """Row i: the latin-1 bytes of tokens[i] (any strings or numbers)."""
    return np.array([str(t).encode("latin-1") + suffix for t in tokens], dtype=bytes)


def number_table(max_token: int) -> np.ndarray:
    """Row i: the bytes of the number i (token_table of 0..max_token, vectorised)."""
    return np.arange(max_token + 1).astype("S")


def encode_token_lines(source: np.ndarray, item_table: np.ndarray, targets: np.ndarray | None = None,
                       counts: np.ndarray | None = None, target_table: np.ndarray | None = None) -> bytes:
    """TTL lines, each ending in "\\n": `source` [users, 100] and `targets` [users, k] hold indices
    into the byte-string tables `item_table` and `target_table`; line u keeps counts[u] targets."""
    if not len(source):
        return b""
    comma = np.char.add(item_table, b",")
    if targets is None:
        cells = [comma[source[:, :-1]], np.char.add(item_table, b"\n")[source[:, -1:]]]
    else:
        later = np.char.add(b",", target_table)[targets[:, 1:]]
        later[np.arange(1, targets.shape[1])[None, :] >= counts[:, None]] = b""
        cells = [comma[source[:, :-1]], np.char.add(item_table, b",,")[source[:, -1:]],
                 target_table[targets[:, :1]], later, np.full((len(source), 1), b"\n")]
    width = max(c.dtype.itemsize for c in cells)
    grid = np.concatenate([c.astype(f"S{width}") for c in cells], axis=1)
    raw = grid.view(np.uint8).ravel()
    return raw[raw != 0].tobytes()  # S cells are NUL-padded; tokens hold no NUL


def encode_lines(source: np.ndarray, targets: np.ndarray | None = None,
                 counts: np.ndarray | None = None) -> bytes:
    """encode_token_lines for tokens that are the numbers themselves (synthetic data, tests)."""
    target_table = None if targets is None else number_table(int(targets.max(initial=0)))
    return encode_token_lines(source, number_table(int(source.max(initial=0))), targets, counts, target_table)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
