"""Training steps move exactly the weights the phase allows, and leave the rest bit-identical."""
import keras
import numpy as np
import pytest
from keras import ops

import pruning
import trainer
from nextitnet import ConureModel, NextItemHead, TargetHead

VOCAB, CHANNELS, TARGETS = 20, 8, 6


@pytest.fixture
def model():
    """Two tasks; T1 owns 30% and T2 21% of every kernel, the rest is free."""
    keras.utils.set_random_seed(0)
    m = ConureModel(VOCAB, CHANNELS, (1, 2), 3)
    m.add_head(1, NextItemHead(VOCAB, name="head_t1"))
    m.add_head(2, TargetHead(TARGETS, "item", l2=0.02, name="head_t2"))
    for conv in m.backbone.convs:
        kernel = ops.convert_to_numpy(conv.kernel)
        owner = pruning.prune(kernel, np.zeros(kernel.shape, "int8"), 1, [0.7, 0.7])
        conv.owner.assign(pruning.prune(kernel, owner, 2, [0.7, 0.7]))
    return m


def t2_batch(rng):
    return {"tokens": rng.integers(3, VOCAB, size=(4, 7)).astype("int32"),
            "target": rng.integers(0, TARGETS, size=4).astype("int32"),
            "negative": rng.integers(0, TARGETS, size=4).astype("int32")}


def snapshot(model):
    return {v.path: ops.convert_to_numpy(v).copy() for v in model.variables}


def train_steps(model, task, phase, train_shared=False, n=3):
    model.set_trainable(task, shared=train_shared)
    step = trainer.TrainStep(lambda b: model.task_loss(b, task, phase), model.trainable_variables,
                             model.variables, trainer.adam(1e-2))
    rng = np.random.default_rng(0)
    for _ in range(n):
        step(t2_batch(rng))


@pytest.mark.parametrize("phase, moving_owner", [("retrain", 2), ("train", 0)])
def test_t2_step_moves_only_its_own_conv_weights(model, phase, moving_owner):
    before = snapshot(model)
    train_steps(model, 2, phase)
    for conv in model.backbone.convs:
        owner = ops.convert_to_numpy(conv.owner)
        now, was = ops.convert_to_numpy(conv.kernel), before[conv.kernel.path]
        np.testing.assert_array_equal(now[owner != moving_owner], was[owner != moving_owner])
        assert (now[owner == moving_owner] != was[owner == moving_owner]).mean() > 0.5


def test_t2_step_leaves_embedding_norms_and_t1_head_bit_identical(model):
    before = snapshot(model)
    train_steps(model, 2, "retrain")
    after = snapshot(model)
    for path in before:
        if "kernel" in path:
            continue
        if path.startswith("head_t2/"):
            assert (after[path] != before[path]).any(), path
        else:
            np.testing.assert_array_equal(after[path], before[path], err_msg=path)


def test_t1_predictions_are_bit_identical_after_t2_training(model):
    tokens = np.random.default_rng(5).integers(3, VOCAB, size=(3, 9)).astype("int32")
    score = trainer.compiled(lambda t: model.task_scores(t, 1), model.variables)
    before = score(tokens)
    train_steps(model, 2, "train")
    train_steps(model, 2, "retrain")
    np.testing.assert_array_equal(score(tokens), before)
