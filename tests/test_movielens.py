"""Tests for movielens.py (`prepare_data.py movielens`): layouts, task definitions, errors, determinism.

Every fixture is a tiny MovieLens-like data set written by the test itself (no MovieLens data
in the repository).
"""
import zipfile
from pathlib import Path

import pytest

import data_loader
from data_prep import movielens
import prepare_data
from data_prep.task_files import SEQ_LEN
from tasks import FILES

TASKS = ("T1", "T2", "T3", "T4", "T5", "T6")
USER_FIELDS = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"

# (user, item, rating, timestamp): three users with 5-10 interactions, one with 3 (dropped).
RATINGS = (
    [(1, 10 + i, 5 if i % 2 else 3, 1000 + i) for i in range(10)]
    + [(2, 30 + i, 4, 2000 + i) for i in range(6)]
    + [(3, 50 + i, 2, 3000 + i) for i in range(5)]
    + [(4, 70 + i, 5, 4000 + i) for i in range(3)]
)
# user -> (raw age, gender, occupation); user 3 has no profile.
PROFILES = {1: (17, "M", "student"), 2: (45, "F", "writer"), 4: (60, "M", "retired")}


# ---------------------------------------------------------------- fixture writers

def write_ml100k(folder: Path, ratings=RATINGS, profiles=PROFILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    (folder / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|12345\n" for u, (a, g, o) in profiles.items()))
    return folder


def write_ml1m(folder: Path, ratings=RATINGS, profiles=PROFILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings))
    codes = {17: 1, 45: 45, 60: 56}
    (folder / "users.dat").write_bytes("".join(
        f"{u}::{g}::{codes[a]}::{len(o)}::Zürich\n" for u, (a, g, o) in profiles.items()).encode("latin-1"))
    return folder


def write_ml20m(folder: Path, ratings=RATINGS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{float(r)},{t}\n" for u, i, r, t in ratings))
    return folder


def write_recbole(folder: Path, name="ml-tiny", ratings=RATINGS, profiles=PROFILES, crlf=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    (folder / f"{name}.inter").write_text(
        INTER_HEADER + end + "".join(f"{u}\t{i}\t{r}\t{t}{end}" for u, i, r, t in ratings), newline="")
    if profiles is not None:
        (folder / f"{name}.user").write_text(
            USER_FIELDS + end + "".join(f"{u}\t{a}\t{g}\t{o}\t12345{end}" for u, (a, g, o) in profiles.items()),
            newline="")
    return folder


def zip_folder(folder: Path, archive: Path, prefix="pkg/dataset_example") -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, f"{prefix}/{folder.name}/{path.relative_to(folder).as_posix()}")
    return archive


# ---------------------------------------------------------------- helpers

def convert(src, out, **options):
    return movielens.convert_movielens(src, out, options.pop("dataset", None), movielens.MovieLensOptions(**options))


def parse(out: Path, task: str):
    """[(source tokens, targets or None)] of one written file."""
    rows = []
    for line in (out / FILES[task]).read_text().splitlines():
        source, _, targets = line.partition(",,")
        rows.append((source.split(","), targets.split(",") if targets else None))
    return rows


def history(source):
    return [t for t in source if t != "0"]


def task_files(out: Path):
    return sorted(p.name for p in out.glob("original_desen_*.csv")) if out.exists() else []


def run_cli(capsys, src, out, *extra):
    rc = prepare_data.main(["movielens", f"--src={src}", f"--out={out}", *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ---------------------------------------------------------------- layouts

LAYOUTS = {
    "ml-100k": lambda tmp: write_ml100k(tmp / "ml-100k"),
    "ml-1m": lambda tmp: write_ml1m(tmp / "ml-1m"),
    "ml-20m": lambda tmp: write_ml20m(tmp / "ml-20m"),
    "recbole": lambda tmp: write_recbole(tmp / "ml-tiny"),
    "recbole-zip": lambda tmp: zip_folder(write_recbole(tmp / "ml-tiny"), tmp / "recbole.whl"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_converts_and_reads_back(tmp_path, layout):
    src, out = LAYOUTS[layout](tmp_path), tmp_path / "out"
    summary = convert(src, out)
    expected = ("T1", "T2", "T3") if layout == "ml-20m" else TASKS
    assert task_files(out) == sorted(FILES[t] for t in expected)
    t1 = data_loader.read_t1(out / FILES["T1"])
    assert t1.ids.shape == (3, SEQ_LEN)  # user 4 has too few interactions
    lines = {"T2": 3, "T3": 2, "T4": 2, "T5": 2, "T6": 2}
    for task in expected[1:]:
        data = data_loader.read_transfer(out / FILES[task], t1.vocab)
        assert data.sources.shape == (lines[task], SEQ_LEN) and data.n_unknown == 0
    assert any(line.startswith("layout:") for line in summary)


def test_lines_end_with_newline_and_use_ttl_format(tmp_path):
    out = tmp_path / "out"
    convert(write_ml100k(tmp_path / "ml-100k"), out)
    for task in TASKS:
        raw = (out / FILES[task]).read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw and b" " not in raw
        for source, targets in parse(out, task):
            assert len(source) == SEQ_LEN and all(source)
            assert (targets is None) == (task == "T1")


def test_archive_with_several_datasets_needs_dataset_option(tmp_path, capsys):
    write_recbole(tmp_path / "data" / "ml-a", name="ml-a")
    write_recbole(tmp_path / "data" / "ml-b", name="ml-b", ratings=RATINGS[:10])
    archive = zip_folder(tmp_path / "data", tmp_path / "two.zip")
    rc, _, err = run_cli(capsys, archive, tmp_path / "out")
    assert rc == 2 and "--dataset" in err and "ml-a" in err and "ml-b" in err
    convert(archive, tmp_path / "out", dataset="ml-b")
    assert len(parse(tmp_path / "out", "T1")) == 1


# ---------------------------------------------------------------- task definitions

def test_chronological_order_with_stable_ties(tmp_path):
    # File order is scrambled in time; items 103 and 101 share a timestamp (file order kept).
    ratings = [(1, 105, 4, 50), (1, 103, 4, 20), (1, 104, 4, 30), (1, 101, 4, 20),
               (1, 102, 4, 10), (1, 106, 4, 60)]
    out = tmp_path / "out"
    convert(write_ml20m(tmp_path / "src", ratings), out)
    (source, _), = parse(out, "T1")
    assert history(source) == ["102", "103", "101", "104", "105"]  # last 1 of 6 is the future
    assert parse(out, "T2")[0][1] == ["106"]


def test_past_future_split_sizes(tmp_path):
    # 10 interactions -> 2 future; 7 -> max(1, floor(1.4)) = 1; 5 -> 1.
    ratings = ([(1, 100 + i, 5, i) for i in range(10)] + [(2, 200 + i, 5, i) for i in range(7)]
               + [(3, 300 + i, 5, i) for i in range(5)])
    out = tmp_path / "out"
    convert(write_ml20m(tmp_path / "src", ratings), out)
    t1, t2 = parse(out, "T1"), parse(out, "T2")
    assert [len(history(s)) for s, _ in t1] == [8, 6, 4]
    assert [targets for _, targets in t2] == [["108", "109"], ["206"], ["304"]]


def test_long_past_keeps_last_100_and_padding_left(tmp_path):
    ratings = [(1, 1000 + i, 5, i) for i in range(130)] + [(2, 5, 5, i) for i in range(1)] \
        + [(2, 10 + i, 5, 10 + i) for i in range(5)]
    out = tmp_path / "out"
    convert(write_ml20m(tmp_path / "src", ratings), out)
    (long_source, _), (short_source, _) = parse(out, "T1")
    assert long_source == [str(1000 + i) for i in range(130 - 26 - 100, 130 - 26)]  # future = 26
    assert short_source[:-5] == ["0"] * 95 and short_source[-5:] == ["5", "10", "11", "12", "13"]


def test_targets_never_in_source_and_repeats_dropped(tmp_path):
    # RecBole data may repeat a (user, movie) pair. User 1's future: 101 (seen in the past),
    # 200, 200 (repeat), 201. User 2's only future movie was seen before: no T2 line.
    ratings = ([(1, 100 + i, 5, i) for i in range(16)] + [(1, 101, 5, 100), (1, 200, 5, 101),
                                                          (1, 200, 5, 102), (1, 201, 5, 103)]
               + [(2, 40, 5, 0), (2, 41, 5, 1), (2, 42, 5, 2), (2, 43, 5, 3), (2, 40, 5, 4)])
    out = tmp_path / "out"
    convert(write_recbole(tmp_path / "src", ratings=ratings, profiles=None), out, max_targets=5)
    t1, t2 = parse(out, "T1"), parse(out, "T2")
    assert [targets for _, targets in t2] == [["200", "201"]]
    assert t2[0][0] == t1[0][0] and not set(t2[0][1]) & set(t1[0][0])


def test_max_targets_keeps_the_earliest_future_movies(tmp_path):
    ratings = [(1, 100 + i, 5, i) for i in range(40)]  # 8 future movies
    out = tmp_path / "out"
    convert(write_ml20m(tmp_path / "src", ratings), out, max_targets=3)
    assert parse(out, "T2")[0][1] == ["132", "133", "134"]


def test_t3_keeps_only_highly_rated_future_movies(tmp_path):
    # Future (last 4 of 20): ratings 3, 5, 4.5, 2 -> T3 targets 117, 118. User 2: none >= 4.
    ratings = ([(1, 100 + i, 1, i) for i in range(16)]
               + [(1, 116, 3, 16), (1, 117, 5, 17), (1, 118, 4.5, 18), (1, 119, 2, 19)]
               + [(2, 200 + i, 5, i) for i in range(4)] + [(2, 204, 3.5, 4)])
    out = tmp_path / "out"
    convert(write_ml20m(tmp_path / "src", ratings), out)
    assert [t for _, t in parse(out, "T2")] == [["116", "117", "118", "119"], ["204"]]
    assert [t for _, t in parse(out, "T3")] == [["117", "118"]]
    assert parse(out, "T3")[0][0] == parse(out, "T1")[0][0]


def test_every_task_line_reuses_the_users_t1_line_in_t1_order(tmp_path):
    out = tmp_path / "out"
    convert(write_ml100k(tmp_path / "ml-100k"), out)
    t1 = [source for source, _ in parse(out, "T1")]
    for task in TASKS[1:]:
        sources = [source for source, _ in parse(out, task)]
        positions = [t1.index(s) for s in sources]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_users_ordered_by_numeric_id_and_short_users_dropped(tmp_path):
    ratings = [(u, 10 * u + i, 5, i) for u in (10, 9, 2) for i in range(5)] + [(7, 1, 5, 0)] * 4
    out = tmp_path / "out"
    summary = convert(write_ml20m(tmp_path / "src", ratings), out)
    assert [history(s)[0] for s, _ in parse(out, "T1")] == ["20", "90", "100"]
    assert any("3 with >= 5 interactions (1 dropped)" in line for line in summary)


def test_non_integer_item_ids_are_renumbered(tmp_path):
    titles = ["Heat (1995)", "Bug's Life, A (1998)", "Alien (1979)", "Zorro (1975)", "Babe (1995)"]
    ratings = [("1m_1", title, 5, i) for i, title in enumerate(titles)]
    out = tmp_path / "out"
    summary = convert(write_recbole(tmp_path / "src", ratings=ratings, profiles=None), out)
    # Sorted titles: Alien 1, Babe 2, Bug's Life 3, Heat 4, Zorro 5.
    assert history(parse(out, "T1")[0][0]) == ["4", "3", "1", "5"] and parse(out, "T2")[0][1] == ["2"]
    assert any("renumbered" in line for line in summary)


def test_ml100k_ages_bucketed_like_ml1m(tmp_path):
    ages = [1, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73]
    codes = ["1", "1", "18", "18", "25", "25", "35", "35", "45", "45", "50", "50", "56", "56"]
    ratings = [(u, 10 + i, 5, i) for u in range(1, len(ages) + 1) for i in range(5)]
    profiles = {u: (age, "F", "other") for u, age in enumerate(ages, start=1)}
    out = tmp_path / "out"
    convert(write_ml100k(tmp_path / "ml-100k", ratings, profiles), out)
    assert [targets[0] for _, targets in parse(out, "T5")] == codes
    assert list(movielens.age_bucket([1, 18, 25, 35, 45, 50, 56])) == [1, 18, 25, 35, 45, 50, 56]


def test_demographic_labels_follow_the_users_file(tmp_path):
    out = tmp_path / "out"
    convert(write_ml1m(tmp_path / "ml-1m"), out)
    # Kept users 1, 2, 3; user 3 has no profile. ML-1M occupation codes are len(name) here.
    assert [t for _, t in parse(out, "T4")] == [["M"], ["F"]]
    assert [t for _, t in parse(out, "T5")] == [["1"], ["45"]]
    assert [t for _, t in parse(out, "T6")] == [["7"], ["6"]]


def test_no_demographics_writes_only_t1_to_t3_and_removes_stale_files(tmp_path, capsys):
    out = tmp_path / "out"
    convert(write_ml100k(tmp_path / "ml-100k"), out)
    rc, printed, _ = run_cli(capsys, write_ml20m(tmp_path / "ml-20m"), out)
    assert rc == 0 and "--tasks=1-3" in printed
    assert task_files(out) == sorted(FILES[t] for t in ("T1", "T2", "T3"))


def test_crlf_recbole_files_give_the_same_output(tmp_path):
    convert(write_recbole(tmp_path / "lf"), tmp_path / "out_lf")
    convert(write_recbole(tmp_path / "crlf", crlf=True), tmp_path / "out_crlf")
    for task in TASKS:
        name = FILES[task]
        assert (tmp_path / "out_lf" / name).read_bytes() == (tmp_path / "out_crlf" / name).read_bytes()


def test_two_runs_are_byte_identical(tmp_path):
    src = write_ml100k(tmp_path / "ml-100k")
    convert(src, tmp_path / "a")
    convert(src, tmp_path / "b")
    for task in TASKS:
        name = FILES[task]
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# ---------------------------------------------------------------- bad input

def _replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = text
    path.write_text("".join(lines))


def missing_field(tmp):
    src = write_ml100k(tmp / "ml-100k")
    _replace_line(src / "u.data", 7, "1\t15\t3\n")
    return src, "u.data", 7


def non_numeric_rating(tmp):
    src = write_ml1m(tmp / "ml-1m")
    _replace_line(src / "ratings.dat", 4, "1::13::five::1003\n")
    return src, "ratings.dat", 4


def non_numeric_timestamp_csv(tmp):
    src = write_ml20m(tmp / "ml-20m")
    _replace_line(src / "ratings.csv", 3, "1,11,5.0,yesterday\n")
    return src, "ratings.csv", 3


def empty_file(tmp):
    src = write_ml100k(tmp / "ml-100k")
    (src / "u.data").write_text("")
    return src, "u.data", 1


def empty_line(tmp):
    src = write_ml100k(tmp / "ml-100k")
    _replace_line(src / "u.data", 5, "\n")
    return src, "u.data", 5


def header_only_inter(tmp):
    src = write_recbole(tmp / "ml-tiny")
    (src / "ml-tiny.inter").write_text(INTER_HEADER + "\n")
    return src, "ml-tiny.inter", 2


def user_header_lacks_fields(tmp):
    src = write_recbole(tmp / "ml-tiny")
    (src / "ml-tiny.user").write_text("user_id:token\tage:token\tzip_code:token\n1\t20\t12345\n")
    return src, "ml-tiny.user", 1


def non_numeric_age(tmp):
    src = write_ml100k(tmp / "ml-100k")
    _replace_line(src / "u.user", 2, "2|forty|F|writer|12345\n")
    return src, "u.user", 2


def bad_line_inside_zip(tmp):
    folder = write_recbole(tmp / "ml-tiny")
    _replace_line(folder / "ml-tiny.inter", 3, "1\t11\t5\n")
    return zip_folder(folder, tmp / "bad.zip"), "ml-tiny.inter", 3


def missing_ratings_file(tmp):
    src = write_ml1m(tmp / "ml-1m")
    (src / "ratings.dat").unlink()
    return src, "ratings.dat", None


def unknown_layout(tmp):
    src = tmp / "movies"
    src.mkdir()
    (src / "movies.csv").write_text("movieId,title\n1,Heat (1995)\n")
    return src, "movies", None


BAD_INPUTS = [missing_field, non_numeric_rating, non_numeric_timestamp_csv, empty_file, empty_line,
              header_only_inter, user_header_lacks_fields, non_numeric_age, bad_line_inside_zip,
              missing_ratings_file, unknown_layout]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=[f.__name__ for f in BAD_INPUTS])
def test_bad_input_raises_data_error_with_file_and_line(tmp_path, make):
    src, file_name, line = make(tmp_path)
    with pytest.raises(data_loader.DataError) as caught:
        convert(src, tmp_path / "out")
    assert caught.value.path.endswith(file_name)
    assert caught.value.line == line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", [missing_field, unknown_layout], ids=["missing_field", "unknown_layout"])
def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys, make):
    src, file_name, line = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    rc, printed, err = run_cli(capsys, src, out)
    assert rc == 2 and printed == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and file_name in err
    if line is not None:
        assert f"{file_name}:{line}:" in err
    assert task_files(out) == []


def test_invalid_option_is_an_error(tmp_path, capsys):
    rc, _, err = run_cli(capsys, write_ml100k(tmp_path / "ml-100k"), tmp_path / "out", "--future_share=1.5")
    assert rc == 2 and err.startswith("error: --future_share") and not (tmp_path / "out").exists()


def test_no_line_for_t3_is_an_error(tmp_path):
    ratings = [(1, 100 + i, 3, i) for i in range(6)]
    with pytest.raises(data_loader.DataError, match="T3 would be empty"):
        convert(write_ml20m(tmp_path / "src", ratings), tmp_path / "out")
    assert not (tmp_path / "out").exists()
