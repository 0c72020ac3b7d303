"""The backend glue: exact Adam on repeated ids (and its sparse and lazy table updates), data parallelism and
sharded item tables that match one device."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

import trainer
from conftest import ROOT, run_stage


def numpy_adam(w, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w


def numpy_lazy_adam(w, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """TF1's LazyAdamOptimizer: only rows with a gradient decay their moments and move."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        rows = np.any(g != 0, axis=1)
        m[rows] = b1 * m[rows] + (1 - b1) * g[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * g[rows] ** 2
        w = w.copy()
        w[rows] -= lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[rows] / (np.sqrt(v[rows]) + eps)
    return w


REPEATED_ROWS = ([0, 0, 1], [1, 2, 2], [0, 3, 3])  # rows repeat within a batch, as tokens do; 3 waits


def train_embedding_rows(reference, **step_options):
    """Trains a 4-row table on a loss that looks up REPEATED_ROWS; returns (weights, numpy reference)."""
    w0 = np.linspace(-1, 1, 8, dtype="float32").reshape(4, 2)
    w = keras.Variable(w0)
    step = trainer.TrainStep(lambda idx: ops.sum(ops.take(w, idx, axis=0) ** 2), [w], [w], trainer.adam(0.1),
                             **step_options)
    grads = []
    for idx in REPEATED_ROWS:
        current = reference(w0, grads, 0.1)
        grads.append(2 * np.bincount(idx, minlength=4)[:, None] * current)
        step(np.array(idx, "int32"))
    return ops.convert_to_numpy(w), reference(w0, grads, 0.1)


@pytest.mark.parametrize("table_update", ["dense", "sparse"])
@pytest.mark.parametrize("xla", [False, True])
def test_adam_on_repeated_embedding_rows_matches_dense_adam_on_every_row(table_update, xla):
    if table_update != "dense" and trainer.backend() != "tensorflow":
        pytest.skip("row updates are a TensorFlow path")
    got, expected = train_embedding_rows(numpy_adam, table_update=table_update, xla=xla)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="row updates are a TensorFlow path")
def test_lazy_adam_moves_only_the_rows_a_batch_touches():
    got, expected = train_embedding_rows(numpy_lazy_adam, table_update="lazy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    dense, _ = train_embedding_rows(numpy_adam)
    assert np.abs(got - dense).max() > 1e-3  # a different algorithm: the deviation is real


TINY_TRAINING = """
import keras, numpy as np
import trainer
from nextitnet import ConureModel, NextItemHead

def train_tiny():
    # tp_t1's step on a tiny model over 3 batches with shared sampled negatives
    keras.utils.set_random_seed(0)
    model = ConureModel(30, 8, (1, 2), 3)
    model.add_head(1, NextItemHead(30, name="head_t1"))
    model.set_trainable(1, shared=True)
    step = trainer.TrainStep(lambda b: model.task_loss(b, 1, "train"), model.trainable_variables,
                             model.variables, trainer.adam(1e-2))
    rng = np.random.default_rng(0)
    for _ in range(3):
        ids = rng.integers(3, 30, size=(8, 11)).astype("int32")
        step({"tokens": ids[:, :-1], "labels": ids[:, 1:], "weights": np.ones((8, 10), "float32"),
              "sampled": np.arange(3, 19, dtype="int32"), "num_tries": np.asarray(20.0, "float32")})
    return model, step

def weights(model):
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.variables}
"""

TWO_DEVICES = """
import os
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + TINY_TRAINING + """
def train(parallel):
    with trainer.data_parallel(parallel):
        model, _ = train_tiny()
        return trainer.device_count(), weights(model)

(one, single), (two, parallel) = train(False), train(True)
assert (one, two) == (1, 2), (one, two)
worst = max(float(np.abs(single[k] - parallel[k]).max()) for k in single)
assert worst < 1e-5, worst
print("max difference", worst)
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_device_training_matches_one_device_at_the_same_global_batch(backend):
    if backend == "jax":
        pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": backend, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", TWO_DEVICES], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "max difference" in done.stdout


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="row updates are a TensorFlow path")
def test_stage_with_sparse_table_update_trains_like_dense(synthetic_dir, tmp_path):
    weights = {}
    for table_update in ("dense", "sparse"):
        run_stage("tp_t1", synthetic_dir, tmp_path / table_update, f"--table_update={table_update}")
        with np.load(tmp_path / table_update / "Models" / "tp_t1" / "weights.npz") as saved:
            weights[table_update] = {name: saved[name] for name in saved.files}
    worst = max(float(np.abs(weights["dense"][k] - weights["sparse"][k]).max()) for k in weights["dense"])
    assert worst < 1e-5, worst


SHARDED_TABLES = TINY_TRAINING + """
def train(distribution):
    keras.distribution.set_distribution(distribution)
    model, step = train_tiny()
    moments = [v for v in step.optimizer.variables if "head_t1_weight" in v.path]
    tables = [model.backbone.embedding.embeddings, model.head(1).weight] + moments
    specs = {tuple(getattr(v.value.sharding, "spec", ()))[:1] for v in tables}  # rows split over "model"
    return weights(model), specs

single, _ = train(None)
sharded, specs = train(trainer.sharded_item_tables(2))
assert specs == {("model",)}, specs
worst = max(float(np.abs(single[k] - sharded[k]).max()) for k in single)
assert worst < 1e-5, worst
print("max difference", worst)
"""


def test_item_tables_sharded_over_two_of_four_devices_train_like_one_device():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SHARDED_TABLES], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "max difference" in done.stdout


def test_split_step_halves_make_the_same_update_as_the_step():
    """bench.py times the gradients and the optimizer apart; together they must be the step."""
    w0 = np.linspace(-1, 1, 8, dtype="float32").reshape(4, 2)
    idx = np.array([0, 0, 3], "int32")
    updated = []
    for use_split in (False, True):
        w = keras.Variable(w0)
        step = trainer.TrainStep(lambda i: ops.sum(ops.take(w, i, axis=0) ** 2), [w], [w], trainer.adam(0.1))
        if use_split:
            gradients, apply = step.split()
            apply(gradients(idx))
        else:
            step(idx)
        updated.append(ops.convert_to_numpy(w))
    np.testing.assert_allclose(updated[1], updated[0], rtol=1e-6)
    assert np.abs(updated[0] - w0).max() > 0.05


SCALED_UPDATE = """
import numpy as np, keras
from keras import ops
import trainer
moved = []
for scales in (None, np.array([0.0, 0.5, 1.0], "float32")):
    w = keras.Variable(np.ones(3, "float32"))
    step = trainer.TrainStep(lambda x: ops.sum((w - x) ** 2), [w], [w], trainer.adam(0.1),
                             update_scales=None if scales is None else {id(w): scales})
    step(np.zeros(3, "float32"))
    moved.append(1 - ops.convert_to_numpy(w))
print((moved[1] / moved[0]).tolist())
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_update_scales_multiply_each_weights_update(backend):
    """HAT's protection: a weight's update is scaled by its factor (0: frozen, 1: a plain step)."""
    if backend == "jax":
        pytest.importorskip("jax")
    done = subprocess.run([sys.executable, "-c", SCALED_UPDATE], env={**os.environ, "KERAS_BACKEND": backend},
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    ratios = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(ratios, [0, 0.5, 1], rtol=1e-5, atol=1e-7)
