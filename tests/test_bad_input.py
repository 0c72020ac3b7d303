"""A corpus of bad inputs, made here: each gives its exact error and leaves the output folder as it was."""
import hashlib
import shutil

import numpy as np
import pytest

import checkpoint
import data_loader
import settings
import tasks
from conftest import run_stage
from data_loader import DataError

T1 = tasks.task(1).file
CLICKS = tasks.task(2).file
GENDER = tasks.task(4).file


def folder_state(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(synthetic_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(synthetic_dir, copy)
    return copy


@pytest.fixture
def out(t1_run, tmp_path):
    """An output folder holding finished T1 checkpoints."""
    copy = tmp_path / "out"
    shutil.copytree(t1_run[0], copy)
    return copy


def edit_line(path, index, edit):
    lines = path.read_text().splitlines()
    lines[index] = edit(lines[index])
    path.write_text("\n".join(lines) + "\n")


def assert_refused(stage_name, data, out, error, match):
    before = folder_state(out) if out.exists() else None
    with pytest.raises(error, match=match):
        run_stage(stage_name, data, out)
    assert (folder_state(out) if out.exists() else None) == before


T1_CASES = {
    "missing file": (lambda p: p.unlink(), "file not found"),
    "empty file": (lambda p: p.write_text(""), "empty file"),
    "unequal lengths": (lambda p: edit_line(p, 2, lambda s: s.split(",", 1)[1]), ":3: line has 99 tokens, expected 100"),
    "empty token": (lambda p: edit_line(p, 4, lambda s: s.replace(",", ",,", 1)), ":5: empty token"),
    "trailing comma": (lambda p: edit_line(p, 1, lambda s: s + ","), ":2: empty token at position 101"),
    "binary": (lambda p: edit_line(p, 2, lambda s: s.replace(",", ",\x00\x01", 1)), ":3: binary or not UTF-8"),
    "latin-1": (lambda p: edit_line(p, 6, lambda s: s.replace(",", ",caf\xe9", 1)) or
                p.write_bytes(p.read_text().encode("latin-1")), ":7: binary or not UTF-8"),
    "header row": (lambda p: p.write_text(",".join(f"item_{i}" for i in range(100)) + "\n" + p.read_text()),
                   ":1: looks like a header row"),
}


@pytest.mark.parametrize("case", sorted(T1_CASES))
def test_bad_t1_file_is_refused(case, data, tmp_path):
    corrupt, message = T1_CASES[case]
    corrupt(data / T1)
    assert_refused("tp_t1", data, tmp_path / "fresh_out", DataError, message)


TRANSFER_CASES = {
    "no separator": (CLICKS, lambda s: s.replace(",,", ",", 1), ":4: no ',,' between source and targets"),
    "empty target list": (CLICKS, lambda s: s.split(",,")[0] + ",,", ":4: empty target list"),
    "empty target token": (CLICKS, lambda s: s + ",", ":4: empty target token"),
}


@pytest.mark.parametrize("case", sorted(TRANSFER_CASES))
def test_bad_transfer_file_is_refused(case, data, out):
    name, edit, message = TRANSFER_CASES[case]
    edit_line(data / name, 3, edit)
    assert_refused("tp_t2", data, out, DataError, message)


def test_transfer_file_from_another_data_set_is_refused(data, out):
    path = data / CLICKS
    lines = [",".join(f"x{i}" for i in range(100)) + ",," + line.split(",,")[1] for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    assert_refused("tp_t2", data, out, DataError, "no source token is in the T1 vocabulary")


def test_label_never_seen_in_training_is_refused(data, t1_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(t1_run[0], out)
    for name in ("tp_t2", "ret_t2", "tp_t3", "ret_t3"):
        run_stage(name, data, out)
    path = data / GENDER
    n_lines = len(path.read_text().splitlines())
    held_out = data_loader.split(n_lines, 10, 0.2, path)[1]
    edit_line(path, int(held_out[0]), lambda s: s.rsplit(",", 1)[0] + ",9")
    assert_refused("tp_t4", data, out, DataError, f":{held_out[0] + 1}: label '9' never occurs in the training split")


@pytest.mark.parametrize("argv, message", [
    (["--epochs=-2"], "epochs=-2: must be an integer >= 0"),
    (["--prune_ratio=0"], "prune_ratio=0.0: must lie in"),
    (["--prune_ratio=1.2"], "prune_ratio=1.2: must lie in"),
    (["--token_dropout=1"], "token_dropout=1.0: must lie in"),
    (["--valid_positions=0"], "valid_positions=0: must be an integer > 0"),
    (["--dilations=[1,64]"], "the widest conv looks 256 steps back"),
    (["--kernel_size=1"], "kernel_size=1"),
    (["--table_update=eager"], "table_update='eager': one of dense, sparse, lazy"),
    (["--table_update=lazy", "--data_parallel=True"], "table_update='lazy': TensorFlow on one device only"),
])
def test_bad_hyperparameter_is_refused_before_any_work(argv, message, synthetic_dir, tmp_path):
    before = folder_state(tmp_path)
    with pytest.raises(settings.ConfigError, match=message.replace("[", r"\[")):
        run_stage("tp_t1", synthetic_dir, tmp_path, *argv)
    assert folder_state(tmp_path) == before and not (tmp_path / "Models").exists()


def test_task_order_that_disagrees_with_the_checkpoint_chain_is_refused(data, out, monkeypatch):
    run_stage("tp_t2", data, out)
    run_stage("ret_t2", data, out)
    swapped = [tasks.TASKS[0], tasks.TASKS[2], tasks.TASKS[1], *tasks.TASKS[3:]]
    monkeypatch.setattr(tasks, "TASKS", swapped)
    assert_refused("tp_t3", data, out, checkpoint.CheckpointError, "has T2 = clicks, tasks.py says likes")


def test_corrupt_checkpoint_is_refused(synthetic_dir, out):
    weights = out / "Models" / "ret_t1" / "weights.npz"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    assert_refused("tp_t2", synthetic_dir, out, checkpoint.CheckpointError, "weights.npz: missing or corrupt")


def test_half_written_checkpoint_is_never_loaded(synthetic_dir, out):
    (out / "Models" / "ret_t1" / "manifest.json").unlink()  # as if the rename never happened
    assert_refused("tp_t2", synthetic_dir, out, checkpoint.CheckpointError, "run conure_ret_t1.py first")


def test_unknown_source_tokens_are_a_warning_with_a_count(data, out):
    edit_line(data / CLICKS, 0, lambda s: "never-seen," + s.split(",", 1)[1])
    assert run_stage("tp_t2", data, out)["unknown_source_tokens"] == 1
    np.testing.assert_equal(len(list((out / "Models").glob("tp_t2"))), 1)


def test_validation_positions_past_the_last_are_refused_for_a_later_task(data, out):
    before = folder_state(out)
    with pytest.raises(settings.ConfigError, match="valid_positions=5: T1 only"):
        run_stage("tp_t2", data, out, "--valid=0.1", "--valid_positions=5")
    assert folder_state(out) == before
