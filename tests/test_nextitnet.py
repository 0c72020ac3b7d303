"""The backbone: causal dilated convolutions, residual blocks, ownership views of the kernels."""
import keras
import numpy as np
import pytest
from keras import ops

from nextitnet import ConureModel, MaskedCausalConv1D, NextItemHead, owned_kernel
from reference import causal_conv


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    m = ConureModel(vocab_size=30, channels=8, dilations=(1, 4), kernel_size=3)
    m.add_head(1, NextItemHead(30))
    return m


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_conv_matches_a_reference_dilated_causal_convolution(dilation):
    layer = MaskedCausalConv1D(5, 3, dilation)
    x = np.random.default_rng(0).normal(size=(2, 11, 4)).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y, causal_conv(x, ops.convert_to_numpy(layer.kernel), dilation), atol=1e-5)


@pytest.mark.parametrize("dilation", [1, 4])
def test_the_backends_dilated_convolution_op_matches_the_reference_too(dilation):
    layer = MaskedCausalConv1D(5, 3, dilation)
    layer.op = "conv"
    x = np.random.default_rng(1).normal(size=(2, 11, 4)).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y, causal_conv(x, ops.convert_to_numpy(layer.kernel), dilation), atol=1e-5)


def test_backbone_output_at_i_depends_on_inputs_up_to_i_only(model):
    tokens = np.random.default_rng(1).integers(3, 30, size=(1, 20)).astype("int32")
    base = ops.convert_to_numpy(model(tokens))
    for i in (0, 7, 19):
        changed = tokens.copy()
        changed[0, i] = 3 if tokens[0, i] != 3 else 4
        moved = np.abs(ops.convert_to_numpy(model(changed)) - base).max(axis=-1)[0]
        assert not moved[:i].any(), f"positions before {i} saw the change"
        assert moved[i:].all(), f"positions from {i} on must see the change"


def test_receptive_field_of_the_stack_spans_the_dilations(model):
    # blocks with dilations (1, 2) and (4, 8), kernel 3: the last output sees 2*(1+2+4+8) = 30 steps back
    tokens = np.full((1, 40), 5, dtype="int32")
    base = ops.convert_to_numpy(model(tokens))[0, -1]
    for i, expect_change in ((39 - 30, True), (39 - 31, False)):
        changed = tokens.copy()
        changed[0, i] = 6
        moved = np.abs(ops.convert_to_numpy(model(changed))[0, -1] - base).max() > 0
        assert moved == expect_change


def test_owned_kernel_phases_pick_the_documented_weights():
    kernel = np.arange(1, 7, dtype="float32")
    owner = np.array([0, 1, 2, 2, 3, 0], dtype="int8")
    view = {phase: ops.convert_to_numpy(owned_kernel(kernel, owner, 2, phase)) for phase in ("train", "retrain", "infer")}
    np.testing.assert_array_equal(view["train"], [1, 2, 0, 0, 0, 6])
    np.testing.assert_array_equal(view["retrain"], [0, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(view["infer"], [0, 2, 3, 4, 0, 0])


def test_free_weights_do_not_reach_inference(model):
    conv = model.backbone.convs[0]
    tokens = np.random.default_rng(2).integers(3, 30, size=(2, 9)).astype("int32")
    owner = np.zeros(conv.owner.shape, "int8")
    owner.ravel()[::2] = 1
    conv.owner.assign(owner)
    before = ops.convert_to_numpy(model.task_scores(tokens, 1, "infer"))
    kernel = ops.convert_to_numpy(conv.kernel)
    kernel.ravel()[1::2] += 1.0
    conv.kernel.assign(kernel)
    np.testing.assert_array_equal(ops.convert_to_numpy(model.task_scores(tokens, 1, "infer")), before)


def test_scores_are_float32_under_mixed_precision():
    # bfloat16 scores would tie, and ties count for the true item: ranking stays in float32
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        m = ConureModel(vocab_size=500, channels=8, dilations=(1, 2), kernel_size=3)
        m.add_head(1, NextItemHead(500))
        tokens = np.random.default_rng(3).integers(3, 500, size=(4, 9)).astype("int32")
        scores = ops.convert_to_numpy(m.task_scores(tokens, 1, "full"))
        user = ops.convert_to_numpy(ops.cast(m.backbone(tokens)[:, -1], "float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    head = m.head(1)
    expected = user @ ops.convert_to_numpy(head.weight).T + ops.convert_to_numpy(head.bias)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert len(np.unique(scores[0])) > 450


def test_last_position_is_computed_from_the_receptive_field_alone(model):
    # dilations (1, 4), kernel 3: the last output sees 2 * (1 + 2 + 4 + 8) = 30 steps back
    assert model.receptive_field == 31
    tokens = np.random.default_rng(4).integers(3, 30, size=(3, 45)).astype("int32")
    whole = ops.convert_to_numpy(model.head(1).score(model.backbone(tokens)[:, -1]))
    np.testing.assert_allclose(ops.convert_to_numpy(model.task_scores(tokens, 1, "full")), whole, rtol=1e-5, atol=1e-6)
