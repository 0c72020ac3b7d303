"""Backend glue: one compiled training step and compiled inference, on TensorFlow or JAX.

Model and loss code is backend-neutral (keras.ops); only taking gradients differs: a
tf.GradientTape inside tf.function, or jax.value_and_grad over a stateless call under jax.jit.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def backend():
    return keras.backend.backend()


def make_deterministic():
    """Same seed and inputs -> bit-identical results (TensorFlow needs op determinism switched on)."""
    if backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def adam(learning_rate):
    """A fresh Adam as the release used it (TF1 defaults: beta1 0.9, beta2 0.999, eps 1e-8), no weight decay."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


class TrainStep:
    """`step(batch) -> loss`: one optimizer update of `variables` on `loss_fn(batch)`."""

    def __init__(self, loss_fn, variables, all_variables, optimizer):
        self.variables = list(variables)
        self.optimizer = optimizer
        optimizer.build(self.variables)
        if backend() == "tensorflow":
            self._step = self._tensorflow_step(loss_fn)
        elif backend() == "jax":
            frozen = [v for v in all_variables if all(v is not t for t in self.variables)]
            self._step = self._jax_step(loss_fn, frozen)
        else:
            raise RuntimeError(f"unsupported Keras backend {backend()!r}: use tensorflow or jax")

    def __call__(self, batch):
        return float(self._step(batch))

    def _tensorflow_step(self, loss_fn):
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def step(batch):
            with tf.GradientTape() as tape:
                loss = loss_fn(batch)
            grads = tape.gradient(loss, self.variables)
            self.optimizer.apply(grads, self.variables)
            return loss

        return step

    def _jax_step(self, loss_fn, frozen):
        import jax

        def loss_of(values, frozen_values, batch):
            mapping = list(zip(self.variables, values)) + list(zip(frozen, frozen_values))
            with keras.StatelessScope(state_mapping=mapping):
                return loss_fn(batch)

        @jax.jit
        def pure_step(values, frozen_values, optimizer_values, batch):
            loss, grads = jax.value_and_grad(loss_of)(values, frozen_values, batch)
            values, optimizer_values = self.optimizer.stateless_apply(optimizer_values, grads, values)
            return loss, values, optimizer_values

        def step(batch):
            loss, values, optimizer_values = pure_step(
                [v.value for v in self.variables], [v.value for v in frozen],
                [v.value for v in self.optimizer.variables], batch,
            )
            for variable, value in zip(self.variables, values):
                variable.assign(value)
            for variable, value in zip(self.optimizer.variables, optimizer_values):
                variable.assign(value)
            return loss

        return step


def compiled(fn, variables):
    """`fn(*arrays)` compiled for the backend; it may read any of `variables`. Returns numpy
    (a structure of arrays if fn returns one)."""
    if backend() == "tensorflow":
        import tensorflow as tf

        graph_fn = tf.function(fn, reduce_retracing=True)
        return lambda *args: keras.tree.map_structure(keras.ops.convert_to_numpy, graph_fn(*args))
    import jax

    variables = list(variables)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(pure)
    return lambda *args: keras.tree.map_structure(np.asarray, jitted([v.value for v in variables], *args))
