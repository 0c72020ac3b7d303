"""Model selection on a validation slice: the best epoch's weights come back, nothing frozen moves."""
import shutil

import numpy as np
import pytest

import evaluate
import pruning
import settings
from conftest import run_stage


def scripted_validation(monkeypatch, scores):
    """Make the validation metric of every evaluation follow `scores`; held-out ones stay real."""
    real, given = evaluate.score, iter(scores)

    def score(model, number, data, config, phase="infer", part="test"):
        if part != "valid":
            return real(model, number, data, config, phase, part)
        return {"MRR@5": next(given), "HR@5": 0.0, "NDCG@5": 0.0, "scores_sha256": "scripted"}

    monkeypatch.setattr(evaluate, "score", score)


def weights(out, name):
    with np.load(out / "Models" / name / "weights.npz") as saved:
        return {path: saved[path] for path in saved.files}


@pytest.fixture
def t1_out(t1_run, tmp_path):
    def fresh(name):
        out = tmp_path / name
        shutil.copytree(t1_run[0], out)
        return out
    return fresh


def test_early_stopping_restores_the_best_epoch_and_nothing_else_moves(t1_out, synthetic_dir, monkeypatch):
    selection = ("--valid=0.2", "--eval_every=1", "--full_softmax=True", "--learning_rate=0.01")
    # best after epoch 2, then two evaluations without improvement: stop after epoch 4
    stopped = t1_out("stopped")
    scripted_validation(monkeypatch, [0.1, 0.5, 0.2, 0.3])
    result = run_stage("tp_t2", synthetic_dir, stopped, "--epochs=8", "--patience=2", *selection)
    assert (result["best_epoch"], result["epochs_trained"]) == (2, 4)
    assert [c["epoch"] for c in result["valid_curve"]] == [1, 2, 3, 4] and len(result["loss_history"]) == 4
    # the same stage trained for exactly 2 epochs (the validation slice, data order and negatives alike)
    two_epochs = t1_out("two_epochs")
    scripted_validation(monkeypatch, [0.1, 0.5])
    assert run_stage("tp_t2", synthetic_dir, two_epochs, "--epochs=2", *selection)["best_epoch"] == 2
    restored, reference, before = weights(stopped, "tp_t2"), weights(two_epochs, "tp_t2"), weights(stopped, "ret_t1")
    assert restored.keys() == reference.keys()
    for path in restored:
        np.testing.assert_array_equal(restored[path], reference[path], err_msg=path)
    # tp_t2 trains the free conv weights and its head: everything else is as ret_t1 left it
    owners, _ = pruning.load(stopped / "Models" / "ret_t1")
    for path, value in before.items():
        conv = path.rsplit("/", 1)[0]
        frozen = owners[conv] == 1 if conv in owners else np.ones(value.shape, bool)
        np.testing.assert_array_equal(restored[path][frozen], value[frozen], err_msg=path)
        if conv in owners:
            assert (restored[path][owners[conv] == 0] != value[owners[conv] == 0]).any(), f"{path}: free part unchanged"


def test_patience_without_a_validation_slice_is_refused(synthetic_dir, tmp_path):
    with pytest.raises(settings.ConfigError, match="patience needs a validation slice"):
        run_stage("tp_t1", synthetic_dir, tmp_path, "--patience=2")


def test_tensorboard_scalars_are_written_as_keras_lays_them_out(t1_out, synthetic_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    logs = tmp_path / "logs"
    result = run_stage("tp_t2", synthetic_dir, t1_out("tb"), "--epochs=3", "--valid=0.2", "--eval_every=1",
                       f"--tensorboard_dir={logs}")

    def scalars(part, tag):
        events = EventAccumulator(str(logs / "tp_t2" / part))
        events.Reload()
        return {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}

    assert scalars("train", "epoch_loss") == pytest.approx(dict(enumerate(result["loss_history"])))
    assert scalars("validation", "epoch_MRR@5") == pytest.approx(
        {c["epoch"] - 1: c["MRR@5"] for c in result["valid_curve"]})
