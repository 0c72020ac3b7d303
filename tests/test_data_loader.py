"""Tests of the TTL parsing in data_loader: vocabulary, read_t1, read_transfer, validation."""

import json

import numpy as np
import pytest

import settings

import data_loader as dl
from data_loader import PAD, UNK, N_RESERVED, DataError, Vocab, read_t1, read_transfer
from conftest import TTL_SAMPLE, needs_ttl_sample



@pytest.fixture
def write(tmp_path):
    """write(text_or_bytes, name) -> path of a new file in tmp_path."""
    def write_file(content, name="data.csv"):
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path
    return write_file


@pytest.fixture
def t1_file(write):
    # counts: b=3, a=2, c=2, d=1 ; a appears before c
    return write("0,a,b\n0,c,b\na,c,b\n0,0,d\n", "t1.csv")


@pytest.fixture
def vocab(t1_file):
    return read_t1(t1_file).vocab


def assert_data_error(call, path, line, *words):
    with pytest.raises(DataError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(where), message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------- vocabulary

def test_vocab_orders_items_by_frequency_then_first_appearance(vocab):
    assert vocab.items == ["b", "a", "c", "d"]
    assert vocab.counts.tolist() == [3, 2, 2, 1]
    assert vocab.counts.dtype == np.int64


def test_vocab_ids_follow_the_reserved_ids(vocab):
    assert vocab.size == N_RESERVED + 4
    assert vocab.encode(["b", "d"]).tolist() == [N_RESERVED, N_RESERVED + 3]


def test_encode_maps_padding_to_pad_and_unknown_to_unk(vocab):
    ids = vocab.encode(["0", "zzz", "a"])
    assert ids.dtype == np.int32
    assert ids.tolist() == [PAD, UNK, N_RESERVED + 1]


def test_encode_keeps_the_shape_of_numpy_input(vocab):
    assert vocab.encode(np.array([["a", "0"], ["b", "x"]])).tolist() == [[4, PAD], [3, UNK]]


def test_tokens_are_opaque_strings(write):
    vocab = read_t1(write("7,007\n7,x\n")).vocab
    assert vocab.items == ["7", "007", "x"]


def test_vocab_save_load_round_trip(vocab, tmp_path):
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded.items == vocab.items
    assert loaded.counts.tolist() == vocab.counts.tolist()
    assert loaded.counts.dtype == np.int64


def test_vocab_save_writes_documented_json_and_no_temp_file(vocab, tmp_path):
    vocab.save(tmp_path / "vocab.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.csv", "vocab.json"]
    saved = json.loads((tmp_path / "vocab.json").read_text())
    assert saved["pad_token"] == "0" and saved["reserved"] == {"pad": 0, "unk": 1, "sep": 2}
    assert saved["items"] == vocab.items


def test_vocab_load_rejects_broken_json(write):
    path = write('{"items": [\n', "vocab.json")
    assert_data_error(lambda: Vocab.load(path), path, 2, "invalid JSON")


# ---------------------------------------------------------------- read_t1

def test_read_t1_encodes_each_line(t1_file):
    data = read_t1(t1_file)
    b, a, c, d = range(N_RESERVED, N_RESERVED + 4)
    assert data.ids.dtype == np.int32
    assert data.ids.tolist() == [[PAD, a, b], [PAD, c, b], [a, c, b], [PAD, PAD, d]]


def test_read_t1_accepts_windows_line_ends_and_no_final_newline(write, t1_file):
    windows = write(t1_file.read_text().replace("\n", "\r\n").rstrip("\r\n"), "windows.csv")
    assert read_t1(windows).ids.tolist() == read_t1(t1_file).ids.tolist()


def test_read_t1_is_the_same_across_many_small_batches(t1_file, monkeypatch):
    whole = read_t1(t1_file)
    monkeypatch.setattr(dl, "READ_BLOCK_BYTES", 8)  # about one line per batch
    batched = read_t1(t1_file)
    assert batched.ids.tolist() == whole.ids.tolist()
    assert batched.vocab.items == whole.vocab.items


# ---------------------------------------------------------------- read_transfer

def test_read_transfer_expands_one_example_per_target(write, vocab):
    data = read_transfer(write("0,a,b,,x,y\n0,c,b,,y\na,b,c,,z,x,y\n"), vocab)
    assert data.example_line.dtype == np.int64 and data.target_codes.dtype == np.int32
    assert data.example_line.tolist() == [0, 0, 1, 2, 2, 2]
    assert data.target_tokens == ["x", "y", "z"]
    assert data.target_codes.tolist() == [0, 1, 1, 2, 0, 1]


def test_read_transfer_encodes_sources_with_the_t1_vocab(write, vocab):
    data = read_transfer(write("0,a,b,,x\n"), vocab)
    assert data.sources.dtype == np.int32
    assert data.sources.tolist() == [[PAD, N_RESERVED + 1, N_RESERVED]]


def test_read_transfer_maps_unknown_sources_to_unk_and_counts_them(write, vocab):
    data = read_transfer(write("0,new,b,,x\nnew,other,0,,y\n"), vocab)
    assert data.n_unknown == 3
    assert data.sources[:, :2].tolist() == [[PAD, UNK], [UNK, UNK]]


def test_read_transfer_is_the_same_across_many_small_batches(write, vocab, monkeypatch):
    path = write("0,a,b,,x,y\n0,c,b,,y\na,b,c,,z,x,y\n0,0,q,,w\n")
    whole = read_transfer(path, vocab)
    monkeypatch.setattr(dl, "READ_BLOCK_BYTES", 16)  # about one line per batch
    batched = read_transfer(path, vocab)
    assert batched.sources.tolist() == whole.sources.tolist()
    assert batched.example_line.tolist() == whole.example_line.tolist() == [0, 0, 1, 2, 2, 2, 3]
    assert batched.target_codes.tolist() == whole.target_codes.tolist()
    assert batched.target_tokens == whole.target_tokens == ["x", "y", "z", "w"]


def test_read_transfer_accepts_windows_line_ends(write, vocab):
    data = read_transfer(write("0,a,b,,x,y\r\n0,c,b,,y\r\n"), vocab)
    assert data.target_tokens == ["x", "y"]


# ---------------------------------------------------------------- validation

def test_missing_file(tmp_path, vocab):
    path = tmp_path / "nope.csv"
    assert_data_error(lambda: read_t1(path), path, None, "not found")
    assert_data_error(lambda: read_transfer(path, vocab), path, None, "not found")


def test_empty_file(write):
    path = write("")
    assert_data_error(lambda: read_t1(path), path, None, "empty file")


def test_nul_byte_is_binary(write):
    path = write(b"a,b\na,\x00\n")
    assert_data_error(lambda: read_t1(path), path, 2, "binary or not UTF-8")


def test_invalid_utf8_is_binary(write):
    path = write(b"a,b\na,b\n\xff\xfe,b\n")
    assert_data_error(lambda: read_t1(path), path, 3, "binary or not UTF-8")


def test_t1_lines_of_unequal_length_name_the_first(write):
    path = write("a,b,c\na,b,c\na,b\na,b,c\na\n")
    assert_data_error(lambda: read_t1(path), path, 3, "2 tokens", "expected 3", "line 1")


def test_t1_empty_token(write):
    path = write("a,b,c\na,,b\n")
    assert_data_error(lambda: read_t1(path), path, 2, "empty token")


def test_t1_trailing_comma_is_an_empty_token(write):
    path = write("a,b,c\na,b,\n")
    assert_data_error(lambda: read_t1(path), path, 2, "empty token")


def test_blank_line_in_the_middle(write):
    path = write("a,b\n\na,b\n")
    assert_data_error(lambda: read_t1(path), path, 2, "empty line")


def test_the_earliest_bad_line_is_reported_whatever_its_problem(write):
    path = write("a,b,c\na,b,c\na,b\na,,c\n")  # length problem before an empty-token problem
    assert_data_error(lambda: read_t1(path), path, 3, "2 tokens")


def test_error_line_numbers_count_across_batches(write, monkeypatch):
    monkeypatch.setattr(dl, "READ_BLOCK_BYTES", 16)
    path = write("a,b,c\n" * 40 + "a,b\n")
    assert_data_error(lambda: read_t1(path), path, 41, "2 tokens")


def test_transfer_line_without_separator(write, vocab):
    path = write("a,b,,x\na,b,x\n")
    assert_data_error(lambda: read_transfer(path, vocab), path, 2, "no ',,'")


def test_transfer_empty_target_list(write, vocab):
    path = write("a,b,,x\na,b,,\n")
    assert_data_error(lambda: read_transfer(path, vocab), path, 2, "empty target list")


def test_transfer_empty_target_token(write, vocab):
    path = write("a,b,,x\na,b,,x,\n")
    assert_data_error(lambda: read_transfer(path, vocab), path, 2, "empty target token")


def test_transfer_sources_of_unequal_length(write, vocab):
    path = write("a,b,,x\na,b,,y\na,b,c,,z\n")
    assert_data_error(lambda: read_transfer(path, vocab), path, 3, "3 tokens", "expected 2")


# ---------------------------------------------------------------- real sample (docs/data.md facts)

@pytest.fixture(scope="module")
def sample_t1():
    return read_t1(TTL_SAMPLE / "original_desen_pretrain.csv")


@needs_ttl_sample
def test_sample_t1_has_10000_lines_and_123726_items(sample_t1):
    assert sample_t1.ids.shape == (10_000, 100)
    assert len(sample_t1.vocab.items) == 123_726


@needs_ttl_sample
def test_sample_click_file_has_9490_lines_and_7089_targets(sample_t1):
    clicks = read_transfer(TTL_SAMPLE / "original_desen_finetune_click_nouserID.csv", sample_t1.vocab)
    assert clicks.sources.shape == (9_490, 100)
    assert len(clicks.target_tokens) == 7_089
    assert np.bincount(clicks.example_line).max() <= 5


@needs_ttl_sample
def test_sample_gender_labels_are_1_and_2(sample_t1):
    gender = read_transfer(TTL_SAMPLE / "original_desen_gender.csv", sample_t1.vocab)
    assert sorted(gender.target_tokens) == ["1", "2"]
    assert len(gender.example_line) == len(gender.sources) == 9_984


@needs_ttl_sample
@pytest.mark.parametrize("name", ["original_desen_finetune_click_nouserID.csv",
                                  "original_desen_finetune_like_nouserID.csv",
                                  "original_desen_gender.csv"])
def test_sample_sources_are_all_known_to_t1(sample_t1, name):
    assert read_transfer(TTL_SAMPLE / name, sample_t1.vocab).n_unknown == 0


def test_prefetched_batches_keep_their_order_and_raise_errors():
    assert list(dl.prefetched(iter(range(10)))) == list(range(10))

    def failing():
        yield 1
        raise ValueError("broken batch")

    with pytest.raises(ValueError, match="broken batch"):
        list(dl.prefetched(failing()))


# ---------------------------------------------------------------- training-user subsets and the k-core filter

def test_k_core_keeps_items_and_users_that_support_each_other(write):
    path = write("a,b,c\na,b,d\na,e,f\ng,h,i\na,g,d\n", "t1.csv")  # lines 1-4 train, line 5 held out
    data = read_t1(path)
    ids, kept, train = dl.k_core(data.ids, data.vocab, np.arange(4), 2, path)
    # b, c..i occur at most twice in training; a three times. At k=2: items a, b (2+), then users 1-2
    # keep two items each, user 3 keeps one (a) and user 4 none; without them a and b still occur twice.
    assert kept.items == ["a", "b"] and list(kept.counts) == [2, 2] and list(train) == [0, 1]
    a, b = (kept.encode(["a", "b"]))
    assert ids[0].tolist() == [a, b, UNK] and ids[3].tolist() == [UNK] * 3
    assert ids[4].tolist() == [a, UNK, UNK]  # the held-out user keeps its line, rare items as <unk>


def test_k_core_that_keeps_no_user_is_an_error(write):
    path = write("a,b\nc,d\ne,f\n", "t1.csv")
    data = read_t1(path)
    assert_data_error(lambda: dl.k_core(data.ids, data.vocab, np.arange(3), 2, path), path, None, "min_item_count=2")


def test_filtered_t1_keeps_every_held_out_and_validation_user(synthetic_dir):
    data = read_t1(synthetic_dir / "original_desen_pretrain.csv")
    plain = dl.T1Task(data, 10, 0.2, "t1", valid=0.1)
    filtered = dl.T1Task(data, 10, 0.2, "t1", valid=0.1, min_item_count=40)
    assert filtered.vocab.size < plain.vocab.size and filtered.n_train < plain.n_train
    assert (filtered.n_test, filtered.n_valid) == (plain.n_test, plain.n_valid)
    unknown = plain.vocab.encode(np.array(plain.vocab.items))[~np.isin(plain.vocab.items, filtered.vocab.items)]
    assert (np.isin(plain.test_ids, unknown) == (filtered.test_ids == UNK)).all()


@pytest.mark.parametrize("number", [1, 2])
def test_training_user_subsets_are_nested_and_leave_held_out_and_validation_alone(number, synthetic_dir):
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "data_dir": synthetic_dir, "valid": 0.1}
    vocab = read_t1(synthetic_dir / "original_desen_pretrain.csv").vocab
    tasks_ = [dl.load_task_data(number, {**config, "train_share": share}, vocab) for share in (0.25, 0.5, 1.0)]
    trained = [{(row.tobytes(), target) for row, target in zip(*train_part(task))} for task in tasks_]
    assert trained[0] < trained[1] < trained[2]
    assert 0.15 < len(trained[0]) / len(trained[2]) < 0.35 and 0.4 < len(trained[1]) / len(trained[2]) < 0.6
    for task in tasks_[:2]:
        for part in ("test", "valid"):
            for mine, full in zip(task.inputs(part), tasks_[2].inputs(part)):
                np.testing.assert_array_equal(mine, full)


def train_part(task):
    """(source rows, targets) a task trains on."""
    if task.kind == "next_item":
        return task.train_ids, [0] * len(task.train_ids)
    return task.sources[task.train_lines], task.train_targets.tolist()
