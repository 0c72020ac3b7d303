"""tools/probe.py: the representations it probes, its scaling and its refusals."""
import json

import numpy as np
import pytest

import assembly
import data_loader
from data_loader import read_t1
from tools import probe


@pytest.fixture(scope="module")
def restored(t1_run):
    """ret_t1's model and T1's vocabulary."""
    model, _, vocab, _, _ = assembly.restore(t1_run[0] / "Models" / "ret_t1", "conure_ret_t1.py")
    return model, vocab


def test_representations_are_the_last_position_and_the_mean_over_real_items(restored, synthetic_dir):
    model, vocab = restored
    data = read_t1(synthetic_dir / "original_desen_pretrain.csv")
    assert data.vocab.items == vocab.items  # the ids below are the checkpoint's
    rows = data.ids[:probe.BLOCK + 3].copy()
    rows[:, :40] = data_loader.PAD  # every row padded on the left; crosses a block boundary too
    last, mean = probe.representations(model, rows, 1, "infer")
    hidden = np.asarray(model.hidden(rows, 1, "infer"))
    kept = rows != data_loader.PAD
    np.testing.assert_allclose(last, hidden[:, -1], rtol=1e-5, atol=1e-6)
    expected = np.stack([h[k].mean(axis=0) for h, k in zip(hidden, kept)])
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-5)


def test_standardised_uses_the_training_rows_statistics_for_every_part():
    train, test = np.array([[1.0, 10.0], [3.0, 30.0]]), np.array([[2.0, 50.0]])
    scaled_train, scaled_test = probe.standardised(train, test)
    np.testing.assert_allclose(scaled_train, [[-1, -1], [1, 1]], atol=1e-6)
    np.testing.assert_allclose(scaled_test, [[0, 3]], atol=1e-6)


def test_probe_refuses_an_item_task_and_writes_nothing(t1_run, synthetic_dir, capsys):
    with pytest.raises(SystemExit) as stopped:
        probe.main([f"--out_dir={t1_run[0]}", "--stage=ret_t1", "--task=2", f"--data_dir={synthetic_dir}"])
    assert stopped.value.code == 2 and "--task=2" in capsys.readouterr().err
    assert not (t1_run[0] / "Results" / "probe_t2_ret_t1.json").exists()


def test_probe_scores_every_representation_on_the_held_out_users(t1_run, synthetic_dir):
    found = probe.main([f"--out_dir={t1_run[0]}", "--stage=ret_t1", "--task=4", f"--data_dir={synthetic_dir}"])
    written = json.loads((t1_run[0] / "Results" / "probe_t4_ret_t1.json").read_text())
    assert written == found and (found["stage"], found["task"], found["as_task"]) == ("ret_t1", 4, 1)
    # the synthetic data's gender is written into the items users pick, so T1's representation holds it
    assert found["mean_over_positions"] > found["majority"] + 0.02  # 4 of 48 users above it here
