"""What the model is fed: T1 batches and held-out inputs, the separator, and the release's split."""
import numpy as np
import pytest

import data_loader as dl
import tasks
from data_loader import PAD, SEP, T1Task, TransferTask

SEQ = 6
CONFIG = {"batch_size": 4, "seed": 0, "full_softmax": False, "exclude_padding": False,
          "num_sampled_ratio": 0.5, "rho": 0.3, "token_dropout": 0.0}


@pytest.fixture
def t1_task(tmp_path):
    """20 users, left-padded lines of 6 tokens (half of them with padding)."""
    rng = np.random.default_rng(0)
    lines = []
    for user in range(20):
        length = SEQ if user % 2 else 3
        lines.append(",".join(["0"] * (SEQ - length) + [f"i{x}" for x in rng.integers(0, 9, length)]))
    path = tmp_path / "t1.csv"
    path.write_text("\n".join(lines) + "\n")
    return T1Task(dl.read_t1(path), split_seed=10, holdout=0.2, path=path)


@pytest.fixture
def clicks_task(t1_task, tmp_path):
    lines = [",".join(["0"] * 3 + ["i1", "i2", "i3"]) + ",,c1,c2", ",".join(["i4"] * SEQ) + ",,c2"] * 5
    path = tmp_path / "clicks.csv"
    path.write_text("\n".join(lines) + "\n")
    return TransferTask(dl.read_transfer(path, t1_task.vocab), "item", 10, 0.2, path)


def first_batch(task, **config):
    return next(iter(task.train_batches({**CONFIG, **config}, epoch=0)))


def test_t1_labels_are_the_inputs_shifted_by_one(t1_task):
    batch = first_batch(t1_task)
    np.testing.assert_array_equal(batch["tokens"][:, 1:], batch["labels"][:, :-1])
    lines = np.concatenate([batch["tokens"], batch["labels"][:, -1:]], axis=1)
    training_lines = {tuple(line) for line in t1_task.train_ids}
    assert all(tuple(line) in training_lines for line in lines)


def test_t1_padding_targets_count_unless_excluded(t1_task):
    counted = first_batch(t1_task)
    assert (counted["labels"] == PAD).any() and (counted["weights"] == 1).all()  # the release's loss
    excluded = first_batch(t1_task, exclude_padding=True)
    np.testing.assert_array_equal(excluded["weights"], (excluded["labels"] != PAD).astype(np.float32))


def test_t1_held_out_input_is_99_of_100_tokens_and_the_truth_the_100th(tmp_path):
    path = tmp_path / "t1.csv"
    path.write_text("".join(",".join(f"u{u}i{t}" for t in range(100)) + "\n" for u in range(10)))
    task = T1Task(dl.read_t1(path), split_seed=10, holdout=0.2, path=path)
    tokens, truth = task.test_inputs()
    assert tokens.shape == (2, 99) and task.seq_len == 99
    np.testing.assert_array_equal(tokens, task.test_ids[:, :99])
    np.testing.assert_array_equal(truth, task.test_ids[:, 99])


def test_t1_validation_scores_each_users_last_items_on_the_line_cut_before_them(tmp_path):
    path = tmp_path / "t1.csv"
    path.write_text("".join(",".join(["0"] * 3 + [f"u{u}i{t}" for t in range(SEQ - 3)]) + "\n" for u in range(20)))
    task = T1Task(dl.read_t1(path), split_seed=10, holdout=0.2, path=path, valid=0.25, valid_positions=5)
    tokens, truth = task.inputs("valid")
    line = task.valid_ids[0]
    assert len(truth) == 3 * task.n_valid  # two of each user's last five items are padding
    np.testing.assert_array_equal(tokens[0], line[:-1])
    np.testing.assert_array_equal(tokens[task.n_valid], np.concatenate([[PAD], line[:-2]]))
    assert truth[0] == line[-1] and truth[task.n_valid] == line[-2] and truth[2 * task.n_valid] == line[-3]
    assert PAD not in truth
    np.testing.assert_array_equal(task.test_inputs()[1], task.test_ids[:, -1])


def test_transfer_input_is_the_source_then_the_separator(clicks_task):
    tokens, _ = clicks_task.test_inputs()
    assert tokens.shape[1] == SEQ + 1 and clicks_task.seq_len == SEQ + 1
    assert (tokens[:, -1] == SEP).all()
    np.testing.assert_array_equal(tokens[:, :-1], clicks_task.sources[clicks_task.test_lines])
    batch = first_batch(clicks_task)
    assert (batch["tokens"][:, -1] == SEP).all() and not (batch["tokens"][:, :-1] == SEP).any()


def test_token_dropout_turns_some_training_items_into_padding_and_keeps_the_labels(t1_task):
    plain, dropped = first_batch(t1_task), first_batch(t1_task, token_dropout=0.5)
    changed = plain["tokens"] != dropped["tokens"]
    assert (dropped["tokens"][changed] == PAD).all() and (plain["tokens"][changed] != PAD).all()
    assert 0.3 < changed.sum() / (plain["tokens"] != PAD).sum() < 0.7
    for key in ("labels", "weights", "sampled", "num_tries"):
        np.testing.assert_array_equal(plain[key], dropped[key])


def test_token_dropout_keeps_the_separator_targets_and_negatives(clicks_task):
    plain, dropped = first_batch(clicks_task), first_batch(clicks_task, token_dropout=0.5)
    assert (dropped["tokens"][:, -1] == SEP).all() and (dropped["tokens"] != plain["tokens"]).any()
    for key in ("target", "negative"):
        np.testing.assert_array_equal(plain[key], dropped[key])


def test_token_dropout_draws_the_same_mask_for_the_same_step(t1_task):
    again = [first_batch(t1_task, token_dropout=0.5)["tokens"] for _ in range(2)]
    np.testing.assert_array_equal(*again)


@pytest.mark.parametrize("n", [10, 1234, 9490])
def test_split_is_the_release_permutation_with_seed_10(n):
    # the release: np.random.seed(10); shuffled = np.random.permutation(np.arange(n));
    # dev_sample_index = -1 * int(0.2 * float(n)); train, test = shuffled[:dev], shuffled[dev:]
    np.random.seed(10)
    shuffled = np.random.permutation(np.arange(n))
    dev_sample_index = -1 * int(0.2 * float(n))
    train, test = dl.split(n, 10, 0.2, "file")
    np.testing.assert_array_equal(train, shuffled[:dev_sample_index])
    np.testing.assert_array_equal(test, shuffled[dev_sample_index:])


@pytest.mark.parametrize("text, numbers, problem", [
    ("1-2,4", [1, 2, 4], "without gaps"),
    ("4,1-3", [1, 2, 3, 4], None),
    ("3-1", None, "no task in this range"),
    ("1-7", None, "no task 7"),
    ("1;2", None, "expected a range"),
])
def test_task_lists_parse_alike_for_every_command_and_a_chain_has_no_gaps(text, numbers, problem):
    if numbers is None:
        with pytest.raises(ValueError, match=problem):
            tasks.parse_numbers(text)
        return
    assert tasks.parse_numbers(text) == numbers
    if problem:
        with pytest.raises(ValueError, match=problem):
            tasks.parse_numbers(text, chain=True)
    else:
        assert tasks.parse_numbers(text, chain=True) == numbers
