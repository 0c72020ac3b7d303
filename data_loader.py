"""Reading the TTL data files (docs/design.md section 2).

TTL ("Tencent Transfer Learning") is a set of comma-separated text files, one user per line:

* T1 (``original_desen_pretrain.csv``): exactly ``seq_len`` (100) item tokens per line,
  left-padded with the token ``"0"``.
* T2+ (clicks, likes, gender, age, life status): the same ``seq_len`` source tokens, then
  ``",,"``, then one or more comma-separated target tokens. A line with m targets is m
  (source, target) examples. Targets live in their own token space, separate from T1 items.

Tokens are opaque strings ("007" and "7" differ). The T1 vocabulary holds every non-padding
token of the T1 file, most frequent first, after the reserved ids PAD, UNK and SEP. Source
tokens of T2+ files that are not in it map to UNK.

Parsing is vectorised with pyarrow: the file is read in record batches of whole lines (a
delimiter that cannot occur in a valid file, no quoting), split into tokens with
``split_pattern`` and dictionary-encoded batch by batch, so memory stays near the size of the
int32 id matrix. Bad input raises :class:`DataError` naming the file and the 1-based line.
"""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

import checkpoint
import tasks
from checkpoint import write_json

PAD_TOKEN = "0"            # padding token in files
PAD, UNK, SEP = 0, 1, 2    # reserved ids in the T1 vocabulary
N_RESERVED = 3

SOURCE_TARGET_SEPARATOR = ",,"
TOKEN_SEPARATOR = ","
READ_BLOCK_BYTES = 32 << 20          # bytes of text per record batch
_LINE_DELIMITER = "\x01"             # csv "column" delimiter: a control byte, invalid in TTL text
_BINARY_BYTES = (b"\x00", _LINE_DELIMITER.encode())


class DataError(ValueError):
    """Bad input. str(e) is ONE line: '<path>:<line>: <problem>' (1-based line), or
    '<path>: <problem>' when no line applies. The parts are kept as .path, .line, .problem."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path, self.line = str(path), line
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {self.problem}")


# ---------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------

@dataclass
class Vocab:
    """T1 item vocabulary: the id of items[i] is N_RESERVED + i."""
    items: list[str]
    counts: np.ndarray
    _item_array: pa.Array | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.items = list(self.items)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if len(self.counts) != len(self.items):
            raise ValueError(f"{len(self.items)} items but {len(self.counts)} counts")

    @property
    def size(self) -> int:
        return N_RESERVED + len(self.items)

    def encode(self, tokens) -> np.ndarray:
        """int32 ids of tokens (a sequence, numpy array or pyarrow array of strings):
        PAD_TOKEN -> PAD, tokens outside the vocabulary -> UNK. Numpy input keeps its shape."""
        shape = tokens.shape if isinstance(tokens, np.ndarray) else None
        strings = _as_string_array(tokens)
        if self._item_array is None:
            self._item_array = pa.array(self.items, type=pa.string())
        position = pc.index_in(strings, value_set=self._item_array)
        ids = pc.add(position, N_RESERVED).fill_null(UNK).to_numpy(zero_copy_only=False)
        ids = ids.astype(np.int32, copy=True)
        is_pad = pc.equal(strings, PAD_TOKEN).fill_null(False)
        ids[is_pad.to_numpy(zero_copy_only=False)] = PAD
        return ids if shape is None else ids.reshape(shape)

    def save(self, path) -> None:
        write_json({"pad_token": PAD_TOKEN, "reserved": _RESERVED_NAMES,
                    "items": self.items, "counts": self.counts.tolist()}, path)

    @classmethod
    def load(cls, path) -> "Vocab":
        document = _read_json(path)
        if document.get("pad_token") != PAD_TOKEN or document.get("reserved") != _RESERVED_NAMES:
            raise DataError(path, f"vocabulary uses other reserved tokens than "
                                  f"pad_token={PAD_TOKEN!r}, reserved={_RESERVED_NAMES}")
        try:
            return cls(document["items"], document["counts"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"not a vocabulary file: {e!r}") from e


_RESERVED_NAMES = {"pad": PAD, "unk": UNK, "sep": SEP}


def _read_json(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", line=e.lineno) from None
    except UnicodeDecodeError:
        raise DataError(path, "binary or not UTF-8") from None
    if not isinstance(document, dict):
        raise DataError(path, "not a vocabulary file: top level is not an object")
    return document


def _as_string_array(tokens) -> pa.Array:
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    if isinstance(tokens, pa.Array):
        return tokens if tokens.type == pa.string() else tokens.cast(pa.string())
    if isinstance(tokens, np.ndarray):
        tokens = tokens.ravel()
    return pa.array(tokens, type=pa.string())


# ---------------------------------------------------------------------------------------
# Reading lines
# ---------------------------------------------------------------------------------------

def _read_lines(path: Path) -> Iterator[tuple[int, pa.StringArray]]:
    """Yield (0-based index of the batch's first line, its lines without line ends)."""
    _check_readable_file(path)
    first_line = 0
    try:
        for batch in pa_csv.open_csv(path, **_line_reader_options()):
            lines = batch.column(0)
            _check_no_nul(path, first_line, lines)
            yield first_line, lines
            first_line += len(lines)
    except pa.ArrowInvalid as e:
        raise _explain_unreadable(path, e) from None
    if first_line == 0:
        raise DataError(path, "empty file")


def _line_reader_options() -> dict:
    """pyarrow csv options that give one string column holding each whole line."""
    return dict(
        read_options=pa_csv.ReadOptions(column_names=["line"], block_size=READ_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(
            delimiter=_LINE_DELIMITER, quote_char=False, double_quote=False, escape_char=False,
            newlines_in_values=False, ignore_empty_lines=False),  # keep blank lines, to report them
        convert_options=pa_csv.ConvertOptions(
            column_types={"line": pa.string()}, check_utf8=True,
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")


def _check_no_nul(path: Path, first_line: int, lines: pa.Array) -> None:
    row = _first_true(pc.match_substring(lines, "\x00"))
    if row is not None:
        raise DataError(path, "binary or not UTF-8 (NUL byte)", line=first_line + row + 1)


def _explain_unreadable(path: Path, error: Exception) -> DataError:
    """Turn a reader error into a DataError; binary content is located by a byte scan."""
    line = _first_binary_line(path)
    if line is not None:
        return DataError(path, "binary or not UTF-8", line=line)
    if "Empty CSV file" in str(error):
        return DataError(path, "empty file")
    if "straddles" in str(error):
        return DataError(path, f"a line is longer than the read block of {READ_BLOCK_BYTES} bytes")
    return DataError(path, f"unreadable: {error}")


def _first_binary_line(path: Path) -> int | None:
    """1-based line of the first invalid UTF-8 or control byte, scanning whole-line chunks."""
    lines_before, carry = 0, b""
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BLOCK_BYTES)
            data = carry + block
            cut = len(data) if not block else data.rfind(b"\n") + 1  # at EOF take the rest
            chunk, carry = data[:cut], data[cut:]
            offset = _first_binary_offset(chunk)
            if offset is not None:
                return lines_before + chunk.count(b"\n", 0, offset) + 1
            lines_before += chunk.count(b"\n")
            if not block:
                return None


def _first_binary_offset(chunk: bytes) -> int | None:
    offsets = [chunk.find(byte) for byte in _BINARY_BYTES]
    try:
        chunk.decode("utf-8")  # a chunk of whole lines never splits a multi-byte character
    except UnicodeDecodeError as e:
        offsets.append(e.start)
    found = [offset for offset in offsets if offset >= 0]
    return min(found) if found else None


# ---------------------------------------------------------------------------------------
# Line checks: each marks the bad rows of a batch; the earliest bad row is reported
# ---------------------------------------------------------------------------------------

@dataclass
class _Check:
    bad_rows: np.ndarray                 # bool per row of the batch
    describe: Callable[[int], str]       # row -> problem text


def _raise_earliest_problem(path: Path, first_line: int, checks: list[_Check]) -> None:
    """Raise for the first bad row; a row failing several checks is named by the first of them."""
    first_bad = [np.argmax(c.bad_rows) if c.bad_rows.any() else None for c in checks]
    candidates = [(row, i) for i, row in enumerate(first_bad) if row is not None]
    if candidates:
        row, i = min(candidates)
        raise DataError(path, checks[i].describe(row), line=first_line + int(row) + 1)


def _first_true(mask: pa.Array) -> int | None:
    if not pc.any(mask).as_py():
        return None
    return pc.index(mask, True).as_py()


def _to_bool(mask: pa.Array) -> np.ndarray:
    return mask.to_numpy(zero_copy_only=False)


def _empty_line_check(lines: pa.Array) -> _Check:
    return _Check(_to_bool(pc.equal(lines, "")), lambda row: "empty line")


def _empty_token_check(texts: pa.Array, what: str) -> _Check:
    """texts are comma-separated token lists; an empty token shows as a leading, trailing
    or doubled comma."""
    sep = TOKEN_SEPARATOR
    bad = pc.or_(pc.or_(pc.starts_with(texts, sep), pc.ends_with(texts, sep)),
                 pc.match_substring(texts, sep + sep))
    def describe(row):
        tokens = texts[row].as_py().split(TOKEN_SEPARATOR)
        return f"empty {what} at position {tokens.index('') + 1} of {len(tokens)}"
    return _Check(_to_bool(bad), describe)


def _token_count_check(counts: np.ndarray, expected: int, what: str) -> _Check:
    return _Check(counts != expected,
                  lambda row: f"{what} has {_n_tokens(counts[row])}, expected {expected} (from line 1)")


def _header_check(path: Path, first_line: int, tokens: pa.Array, tokens_per_line: np.ndarray) -> None:
    """A stray header: line 1 has no numeric token while every other token is numeric."""
    if first_line != 0 or len(tokens_per_line) < 2:
        return
    is_digit = _to_bool(pc.utf8_is_digit(tokens))
    first = int(tokens_per_line[0])
    if not is_digit[:first].any() and is_digit[first:].all():
        raise DataError(path, "looks like a header row (no numeric token above numeric data); remove it", line=1)


def _n_tokens(n: int) -> str:
    return f"{n} token" if n == 1 else f"{n} tokens"


def _split_tokens(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Flat tokens of all texts and the token count of each text."""
    lists = pc.split_pattern(texts, TOKEN_SEPARATOR)
    counts = pc.list_value_length(lists).to_numpy().astype(np.int64)
    return pc.list_flatten(lists), counts


# ---------------------------------------------------------------------------------------
# Dictionary encoding across batches
# ---------------------------------------------------------------------------------------

class _FirstSeenCodes:
    """Codes 0, 1, 2, ... for strings in order of first appearance across batches."""

    def __init__(self):
        self.values = pa.array([], type=pa.string())  # value of each code

    def encode(self, tokens: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(tokens)   # batch dictionary, in first-appearance order
        batch_values = encoded.dictionary
        known_code = pc.index_in(batch_values, value_set=self.values)
        is_new = _to_bool(pc.is_null(known_code))
        code_of_batch_value = known_code.fill_null(0).to_numpy().astype(np.int32)
        code_of_batch_value[is_new] = np.arange(len(self.values), len(self.values) + is_new.sum())
        self.values = pa.concat_arrays([self.values, batch_values.filter(pa.array(is_new))])
        return code_of_batch_value[encoded.indices.to_numpy()]


# ---------------------------------------------------------------------------------------
# T1
# ---------------------------------------------------------------------------------------

@dataclass
class T1Data:
    ids: np.ndarray        # int32 [n_lines, seq_len] vocabulary ids
    vocab: Vocab


def read_t1(path) -> T1Data:
    """Read a T1 file: build its vocabulary and encode every line."""
    path = Path(path)
    token_codes, batches, seq_len = _FirstSeenCodes(), [], None
    for first_line, lines in _read_lines(path):
        tokens, tokens_per_line = _split_tokens(lines)
        seq_len = seq_len or int(tokens_per_line[0])
        _header_check(path, first_line, tokens, tokens_per_line)
        _raise_earliest_problem(path, first_line, [
            _empty_line_check(lines),
            _empty_token_check(lines, "token"),
            _token_count_check(tokens_per_line, seq_len, "line"),
        ])
        batches.append(token_codes.encode(tokens))
    vocab, id_of_code = _vocab_by_frequency(token_codes.values, batches)
    return T1Data(_gather_ids(batches, id_of_code, seq_len), vocab)


def _vocab_by_frequency(values: pa.Array, batches: list[np.ndarray]) -> tuple[Vocab, np.ndarray]:
    """Vocabulary of the non-padding values, most frequent first (stable: ties keep
    first-appearance order), and the vocabulary id of each code."""
    counts = sum(np.bincount(codes, minlength=len(values)) for codes in batches)
    pad_code = pc.index(values, PAD_TOKEN).as_py()  # -1 when the file has no padding
    item_codes = np.flatnonzero(np.arange(len(values)) != pad_code)
    item_codes = item_codes[np.argsort(-counts[item_codes], kind="stable")]
    id_of_code = np.full(len(values), PAD, dtype=np.int32)
    id_of_code[item_codes] = N_RESERVED + np.arange(len(item_codes), dtype=np.int32)
    vocab = Vocab(values.take(pa.array(item_codes)).to_pylist(), counts[item_codes])
    return vocab, id_of_code


def _gather_ids(batches: list[np.ndarray], id_of_code: np.ndarray, seq_len: int) -> np.ndarray:
    return _concatenate_freeing(batches, lambda codes, out: np.take(id_of_code, codes, out=out)
                                ).reshape(-1, seq_len)


def _concatenate_freeing(batches: list[np.ndarray], copy=None) -> np.ndarray:
    """Concatenate 1-d int32 batches, emptying the list as it goes so that the peak memory is
    the result plus one batch, not twice the result. copy(batch, out) fills each slice."""
    copy = copy or (lambda batch, out: np.copyto(out, batch))
    result = np.empty(sum(len(batch) for batch in batches), dtype=np.int32)
    start = 0
    while batches:
        batch = batches.pop(0)
        copy(batch, result[start:start + len(batch)])
        start += len(batch)
    return result


# ---------------------------------------------------------------------------------------
# T2+ (transfer tasks)
# ---------------------------------------------------------------------------------------

@dataclass
class TransferData:
    """A T2+ file: "<seq_len source tokens>,,<target>[,<target>...]" per line."""
    sources: np.ndarray        # int32 [n_lines, seq_len], T1 vocabulary ids (unknown -> UNK)
    n_unknown: int             # non-padding source tokens not in the vocabulary
    example_line: np.ndarray   # int64 [n_examples]: 0-based line of each (source, target) example
    target_codes: np.ndarray   # int32 [n_examples]: index into target_tokens
    target_tokens: list[str]   # distinct targets in first-appearance order


def read_transfer(path, vocab: Vocab) -> TransferData:
    """Read a T2+ file: encode sources with the T1 vocabulary, expand one example per target."""
    path = Path(path)
    target_codes = _FirstSeenCodes()
    sources, example_lines, targets, seq_len = [], [], [], None
    for first_line, lines in _read_lines(path):
        source_text, target_text, has_separator = _split_source_targets(lines)
        source_tokens, source_counts = _split_tokens(source_text)
        target_tokens, target_counts = _split_tokens(target_text)
        seq_len = seq_len or int(source_counts[0])
        _header_check(path, first_line, *_split_tokens(pc.replace_substring(lines, SOURCE_TARGET_SEPARATOR,
                                                                             TOKEN_SEPARATOR)))
        _raise_earliest_problem(path, first_line, [
            _empty_line_check(lines),
            _Check(~has_separator,
                   lambda row: f"no {SOURCE_TARGET_SEPARATOR!r} between source and targets"),
            _empty_token_check(source_text, "source token"),
            _token_count_check(source_counts, seq_len, "source"),
            _Check(_to_bool(pc.equal(target_text, "")), lambda row: "empty target list"),
            _empty_token_check(target_text, "target token"),
        ])
        sources.append(vocab.encode(source_tokens))
        line_numbers = np.arange(first_line, first_line + len(lines), dtype=np.int64)
        example_lines.append(np.repeat(line_numbers, target_counts))
        targets.append(target_codes.encode(target_tokens))
    n_unknown = sum(int(np.count_nonzero(batch == UNK)) for batch in sources)
    if all(np.isin(batch, (PAD, UNK)).all() for batch in sources):
        raise DataError(path, "no source token is in the T1 vocabulary: is this file from another data set?")
    return TransferData(_concatenate_freeing(sources).reshape(-1, seq_len), n_unknown,
                        np.concatenate(example_lines), np.concatenate(targets),
                        target_codes.values.to_pylist())


def _split_source_targets(lines: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """Source text, target text and whether the line has the separator at all (lines
    without it get an empty source and target, which their own check reports)."""
    has_separator = pc.match_substring(lines, SOURCE_TARGET_SEPARATOR)
    parts = pc.split_pattern(pc.if_else(has_separator, lines, SOURCE_TARGET_SEPARATOR),
                             SOURCE_TARGET_SEPARATOR, max_splits=1)
    return pc.list_element(parts, 0), pc.list_element(parts, 1), _to_bool(has_separator)


# ---------------------------------------------------------------------------------------
# Users to answer for (predict.py)
# ---------------------------------------------------------------------------------------

@dataclass
class UserRows:
    """One read block of a user file."""
    first_line: int            # 0-based line of the first row
    ids: np.ndarray            # int32 [n, length]: T1 vocabulary ids, left-padded with PAD
    unknown: np.ndarray        # int64 [n]: tokens of each row not in the vocabulary (now UNK)
    cut: np.ndarray            # bool [n]: the line had more than `length` tokens; its last ones are kept


def read_users(path, vocab: Vocab, length: int) -> Iterator[UserRows]:
    """Stream a file of users, one per line in the TTL source format, block by block. A
    ``,,targets`` part is ignored; lines shorter than `length` are left-padded, longer ones keep
    their most recent `length` tokens. Bad lines raise DataError."""
    path = Path(path)
    for first_line, lines in _read_lines(path):
        source = pc.list_element(pc.split_pattern(lines, SOURCE_TARGET_SEPARATOR, max_splits=1), 0)
        tokens, counts = _split_tokens(source)
        _header_check(path, first_line, tokens, counts)
        _raise_earliest_problem(path, first_line, [
            _empty_line_check(lines),
            _Check(_to_bool(pc.equal(source, "")), lambda row: f"no source token before {SOURCE_TARGET_SEPARATOR!r}"),
            _empty_token_check(source, "source token"),
        ])
        ids = vocab.encode(tokens)
        row = np.repeat(np.arange(len(lines)), counts)
        from_end = np.cumsum(counts)[row] - 1 - np.arange(len(ids))  # 0 = the line's last token
        kept = from_end < length
        rows = np.full((len(lines), length), PAD, dtype=np.int32)
        rows[row[kept], length - 1 - from_end[kept]] = ids[kept]
        unknown = np.bincount(row[kept & (ids == UNK)], minlength=len(lines))
        yield UserRows(first_line, rows, unknown, counts > length)


# ----------------------------------------------------------------------------- splits and tasks

def split(n, seed, holdout, path):
    """The release's split: numpy legacy permutation with `seed`, the last int(holdout * n) held out."""
    n_test = int(holdout * n)
    if n_test < 1 or n - n_test < 1:
        raise DataError(path, f"{n} examples are too few for a {holdout:.0%} held-out split")
    order = np.random.RandomState(seed).permutation(n)
    return order[:-n_test], order[-n_test:]


def split_valid(train, valid, path):
    """(train, validation): the last int(valid * len(train)) of the training split set aside for
    model selection; the held-out split is untouched."""
    n_valid = int(valid * len(train))
    if valid and (n_valid < 1 or n_valid == len(train)):
        raise DataError(path, f"{len(train)} training examples are too few for a {valid:.0%} validation slice")
    return (train[:-n_valid], train[-n_valid:]) if n_valid else (train, train[:0])


SUBSET_SEED = 2024  # the fixed hash behind user_keys


def user_keys(rows):
    """A fixed pseudo-random number in [0, 1) per row of ids, the same for the same row in any task
    and run: keeping the training rows whose key lies below a share gives nested random subsets."""
    weights = np.random.default_rng(SUBSET_SEED).integers(1, 2**62, size=rows.shape[1], dtype=np.uint64) | 1
    key = (rows.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)  # wraps modulo 2**64
    key ^= key >> np.uint64(31)
    key *= np.uint64(0xBF58476D1CE4E5B9)
    key ^= key >> np.uint64(29)
    return (key >> np.uint64(11)).astype(np.float64) / 2.0**53


def training_subset(train, rows, share):
    """The training examples whose user (`rows`, their source ids) falls in the first `share` of users."""
    return train if share >= 1 else train[user_keys(rows) < share]


def k_core(ids, vocab, train, k, path):
    """Items seen fewer than k times in the training users become <unk>, then training users left
    with fewer than k items are dropped, until nothing changes. Returns (ids with every line
    re-encoded, the vocabulary of the kept items by training frequency, the kept training rows)."""
    keep = train
    while True:
        counts = np.bincount(ids[keep].ravel(), minlength=vocab.size)
        kept_item = (counts >= k) & (np.arange(vocab.size) >= N_RESERVED)
        still = keep[kept_item[ids[keep]].sum(axis=1) >= k]
        if len(still) == len(keep):
            break
        keep = still
    if not len(keep):
        raise DataError(path, f"no training user keeps {k} items seen at least {k} times (min_item_count={k})")
    order = np.flatnonzero(kept_item)
    order = order[np.argsort(-counts[order], kind="stable")]
    new_id = np.full(vocab.size, UNK, dtype=np.int32)
    new_id[[PAD, UNK, SEP]] = [PAD, UNK, SEP]
    new_id[order] = N_RESERVED + np.arange(len(order), dtype=np.int32)
    kept = Vocab([vocab.items[i - N_RESERVED] for i in order], counts[order])
    return new_id[ids], kept, keep


def drop_tokens(tokens, rate, rng):
    """Token dropout, a regulariser the release does not have: each item of a training input
    becomes padding with probability `rate`. Labels and targets keep the true items. Drawn after
    a batch's negatives, so these do not change with `rate`; rate 0 draws nothing."""
    if not rate:
        return tokens
    return np.where((rng.random(tokens.shape) < rate) & (tokens != PAD), PAD, tokens)


def with_separator(sources):
    """T2+ input: the source tokens followed by the separator, where the user is read."""
    return np.concatenate([sources, np.full((len(sources), 1), SEP, dtype=sources.dtype)], axis=1)


def pad_rows(rows, size):
    """Repeat the last row up to `size` rows, so every compiled call sees one shape."""
    if len(rows) >= size:
        return rows
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])


def other_labels(rng, truth, n_classes):
    """One uniformly drawn label != truth per row."""
    draw = rng.integers(0, n_classes - 1, size=len(truth))
    return draw + (draw >= truth)


class LogUniformSampler:
    """TF's log_uniform_candidate_sampler with unique=True: draw until `n_sampled` distinct ids.

    P(id) = (log(id + 2) - log(id + 1)) / log(n_classes + 1), which favours small ids, i.e. frequent
    items, since the vocabulary is ordered by frequency. Returns the ids in order of first draw and
    the number of draws it took (for the expected counts of the logQ correction).
    """

    def __init__(self, n_classes, n_sampled):
        if not 1 <= n_sampled <= n_classes:
            raise ValueError(f"cannot sample {n_sampled} distinct ids out of {n_classes}")
        self.n_classes, self.n_sampled = n_classes, n_sampled

    def sample(self, rng):
        log_range = np.log(self.n_classes + 1.0)
        draws = np.empty(0, dtype=np.int64)
        chunk = 2 * self.n_sampled
        while True:
            new = (np.exp(rng.random(chunk) * log_range).astype(np.int64) - 1) % self.n_classes
            draws = np.concatenate([draws, new])
            _, first = np.unique(draws, return_index=True)
            if len(first) >= self.n_sampled:
                break
            chunk *= 2
        first = np.sort(first)[: self.n_sampled]
        return draws[first].astype(np.int32), np.asarray(first[-1] + 1, dtype=np.float32)


class PopularitySampler:
    """LambdaFM's static sampler: target of popularity rank r drawn with p ~ exp(-(r+1) / (rho * n)).

    Target ids are ranks (the target vocabulary is ordered by training frequency).
    """

    def __init__(self, n_targets, rho):
        weights = np.exp(-(np.arange(n_targets) + 1.0) / (rho * n_targets))
        self.cdf = np.cumsum(weights) / weights.sum()

    def sample(self, rng, size):
        return np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), len(self.cdf) - 1).astype(np.int32)


def prefetched(batches, depth=2):
    """Iterate `batches` made by a background thread, `depth` ahead of the consumer (numpy
    releases the GIL, so sampling overlaps the training step). Order is unchanged."""
    ready = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for batch in batches:
                ready.put(batch)
        except BaseException as error:  # handed to the consumer
            ready.put(error)
        ready.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := ready.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


class Batches:
    """One epoch of training batches, made lazily. Data order depends only on (seed, stream, epoch)
    and each batch's sampling only on (seed, stream, epoch, step), so any step can be rebuilt
    exactly. Each stage has its own `stream`: a retrain does not replay its train phase's batches."""

    def __init__(self, n, batch_size, seed, epoch, make_batch, stream=0, whole=False):
        self.order = np.random.default_rng([seed, stream, epoch]).permutation(n)
        self.batch_size = min(batch_size, n)
        self.seed, self.stream, self.epoch, self.make_batch = seed, stream, epoch, make_batch
        self.whole = whole  # the last, smaller batch too (training leaves it out, as the release)

    def __len__(self):
        if not self.batch_size:
            return 0
        return -(-len(self.order) // self.batch_size) if self.whole else len(self.order) // self.batch_size

    def __iter__(self):
        return self.from_step(0)

    def from_step(self, start):
        for step in range(start, len(self)):
            rows = self.order[step * self.batch_size:(step + 1) * self.batch_size]
            yield self.make_batch(rows, np.random.default_rng([self.seed, self.stream, self.epoch, step]))


@dataclass
class TargetVocab:
    """Targets (item or class label tokens) of a T2+ task; id = position, by training frequency."""
    tokens: list
    counts: np.ndarray

    def save(self, path):
        write_json({"tokens": list(self.tokens), "counts": np.asarray(self.counts).tolist()}, path)

    @classmethod
    def load(cls, path):
        saved = _read_json(path)
        return cls(saved["tokens"], np.asarray(saved["counts"], dtype=np.int64))


class T1Task:
    """T1 next item: held-out users are whole lines; train on every position, evaluate the last.
    `valid` sets that share of the training users aside for model selection, scored on each
    one's last `valid_positions` items (more predictions, so a less noisy selection).
    `min_item_count` k > 0 applies `k_core` over the training users (every line's rare items become
    <unk>); `train_share` < 1 trains on that nested share of the training users (`user_keys`).
    Neither changes the held-out or validation users."""
    kind = "next_item"
    excluded_targets = (PAD, UNK, SEP)
    n_unknown = 0

    def __init__(self, data, split_seed, holdout, path, valid=0.0, valid_positions=1, min_item_count=0,
                 train_share=1.0):
        train, test = split(len(data.ids), split_seed, holdout, path)
        train, valid_rows = split_valid(train, valid, path)
        ids, self.vocab = data.ids, data.vocab
        if min_item_count:
            ids, self.vocab, train = k_core(ids, self.vocab, train, min_item_count, path)
        train = training_subset(train, ids[train], train_share)
        self.valid_positions = valid_positions
        self.train_ids, self.valid_ids, self.test_ids = ids[train], ids[valid_rows], ids[test]
        self.n_train, self.n_valid, self.n_test = len(train), len(valid_rows), len(test)
        self.n_targets = self.vocab.size
        self.seq_len = data.ids.shape[1] - 1  # the model sees all tokens but the last

    def train_batches(self, config, epoch, stream=0):
        return self.batches(self.train_ids, config, epoch, stream, config["token_dropout"])

    def valid_batches(self, config, stream=0):
        """The validation users' whole lines as training batches, the same every time (every batch,
        the same samples, no token dropout): what the training loss is on the slice."""
        return self.batches(self.valid_ids, config, 0, stream, 0.0, whole=True)

    def batches(self, lines, config, epoch, stream, token_dropout, whole=False):
        sampler = None
        if not config["full_softmax"]:
            sampler = LogUniformSampler(self.vocab.size, max(1, int(config["num_sampled_ratio"] * self.vocab.size)))

        def make_batch(rows, rng):
            ids = lines[rows]
            labels = ids[:, 1:]
            weights = (labels != PAD) if config["exclude_padding"] else np.ones(labels.shape, bool)
            if config.get("min_item_count"):  # a filtered item is no target to learn
                weights &= labels != UNK
            batch = {"labels": labels, "weights": weights.astype(np.float32)}
            if sampler:
                batch["sampled"], batch["num_tries"] = sampler.sample(rng)
            batch["tokens"] = drop_tokens(ids[:, :-1], token_dropout, rng)
            return batch

        return Batches(len(lines), config["batch_size"], config["seed"], epoch, make_batch, stream, whole)

    def inputs(self, part="test"):
        """(model input, truth) of the held-out ("test") users' last items, or of the validation
        ("valid") users' last `valid_positions` items: an earlier item is predicted from the line
        cut before it and padded on the left. Padding targets are left out."""
        if part == "test":
            return self.test_ids[:, :-1], self.test_ids[:, -1]
        inputs, truth = [], []
        for back in range(self.valid_positions):
            cut = self.valid_ids[:, :self.valid_ids.shape[1] - back]
            padding = np.full((len(cut), back), PAD, dtype=cut.dtype)
            inputs.append(np.concatenate([padding, cut[:, :-1]], axis=1))
            truth.append(cut[:, -1])
        inputs, truth = np.concatenate(inputs), np.concatenate(truth)
        keep = truth != PAD
        return inputs[keep], truth[keep]

    def test_inputs(self):
        return self.inputs("test")

    def train_target_counts(self):
        """How often each id occurs in the training lines (for the popularity baseline)."""
        return np.bincount(self.train_ids.ravel(), minlength=self.n_targets)


class TransferTask:
    """T2+: examples are (source line, one target); the split is over examples (docs/design.md section 2).
    `train_share` < 1 keeps the training examples of that nested share of the users (`user_keys`)."""
    excluded_targets = ()

    def __init__(self, data, kind, split_seed, holdout, path, valid=0.0, train_share=1.0):
        train, test = split(len(data.example_line), split_seed, holdout, path)
        # target ids follow the whole training split's counts, so they do not depend on `valid`
        counts = np.bincount(data.target_codes[train], minlength=len(data.target_tokens))
        order = np.argsort(-counts, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        targets = rank[data.target_codes].astype(np.int32)
        if kind == "class":
            check_labels(path, data, counts, order)
        self.kind, self.sources, self.n_unknown = kind, data.sources, data.n_unknown
        self.seq_len = data.sources.shape[1] + 1  # source and separator
        self.targets = TargetVocab([data.target_tokens[i] for i in order], counts[order])
        train, valid_rows = split_valid(train, valid, path)
        train = training_subset(train, data.sources[data.example_line[train]], train_share)
        self.train_lines, self.train_targets = data.example_line[train], targets[train]
        self.valid_lines, self.valid_targets = data.example_line[valid_rows], targets[valid_rows]
        self.test_lines, self.test_targets = data.example_line[test], targets[test]
        self.n_train, self.n_valid, self.n_test, self.n_targets = len(train), len(valid_rows), len(test), len(order)

    def train_batches(self, config, epoch, stream=0):
        return self.batches(self.train_lines, self.train_targets, config, epoch, stream, config["token_dropout"])

    def valid_batches(self, config, stream=0):
        """The validation examples as training batches, the same every time (every batch, the same
        negatives, no token dropout): what the training loss is on the slice."""
        return self.batches(self.valid_lines, self.valid_targets, config, 0, stream, 0.0, whole=True)

    def batches(self, lines, targets, config, epoch, stream, token_dropout, whole=False):
        sampler = PopularitySampler(self.n_targets, config["rho"])

        def make_batch(rows, rng):
            target = targets[rows]
            batch = {"target": target}
            if not config["full_softmax"]:
                batch["negative"] = (sampler.sample(rng, len(rows)) if self.kind == "item"
                                     else other_labels(rng, target, self.n_targets).astype(np.int32))
            sources = drop_tokens(self.sources[lines[rows]], token_dropout, rng)
            batch["tokens"] = with_separator(sources)
            return batch

        return Batches(len(lines), config["batch_size"], config["seed"], epoch, make_batch, stream, whole)

    def inputs(self, part="test"):
        """(source + separator, target) of the held-out ("test") or validation ("valid") examples."""
        lines, targets = (self.test_lines, self.test_targets) if part == "test" else (self.valid_lines,
                                                                                      self.valid_targets)
        return with_separator(self.sources[lines]), targets

    def test_inputs(self):
        return self.inputs("test")

    def train_target_counts(self):
        """How often each target occurs in the examples trained on (for the popularity baseline)."""
        return np.bincount(self.train_targets, minlength=self.n_targets)


def check_labels(path, data, train_counts, order):
    """A classification task needs two or more labels, each seen in training."""
    unseen = np.flatnonzero(train_counts == 0)
    if len(unseen):
        first = int(np.flatnonzero(data.target_codes == unseen[0])[0])
        raise DataError(path, f"label {data.target_tokens[unseen[0]]!r} never occurs in the training split",
                        line=int(data.example_line[first]) + 1)
    if len(order) < 2:
        raise DataError(path, f"a classification task needs at least two labels, found {len(order)}")


# ----------------------------------------------------------------------------- a stage's data

def task_file(config, number):
    return Path(config["data_dir"]) / tasks.task(number).file


def load_task_data(number, config, vocab=None, t1_data=None):
    """Split data of task `number`; T1 builds the vocabulary (from `t1_data`, T1's file already
    read, if given), later tasks encode with `vocab`."""
    path, valid = task_file(config, number), config.get("valid", 0.0)
    share = config.get("train_share") or 1.0
    if number == 1:
        return T1Task(read_t1(path) if t1_data is None else t1_data, config["split_seed"], config["holdout"], path,
                      valid, config.get("valid_positions", 1), config.get("min_item_count") or 0, share)
    return TransferTask(read_transfer(path, vocab), tasks.task(number).kind, config["split_seed"], config["holdout"],
                        path, valid, share)


def fingerprints(config, number):
    """SHA-256 of the T1 file and of task `number`'s file: the data a checkpoint belongs to."""
    for path in (task_file(config, 1), task_file(config, number)):
        if not path.is_file():
            raise DataError(path, "file not found")
    return {"t1_sha256": checkpoint.file_sha256(task_file(config, 1)),
            "task_sha256": checkpoint.file_sha256(task_file(config, number))}
