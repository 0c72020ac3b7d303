"""Task gates on the conv outputs, for HAT and TERACON (docs/hat.md, docs/teracon.md).

A gated task t has one embedding row per conv of the backbone, one value per output channel. Its
gate on conv l is sigmoid(s * e_t[l]) (HAT's attention, `plain`); TERACON's relation-aware gate
mixes tanh(s * e_t) with tanh(+-s * e_i) of every other task i through a small learned function
per task and conv (`RelationGate`). `s` is annealed over the batches of every epoch (`anneal`)
and is `smax` at inference. Where a gate sits in the residual block depends on the method
(POSITIONS). Everything is `keras.ops`, so both backends run it.
"""
import keras
import numpy as np
from keras import ops

EMBEDDING_LIMIT = 6.0  # HAT's and TERACON's clamp of the task embeddings after every step
INITIALISERS = {  # HAT's released networks: N(0, 1); TERACON's: U(0, 2)
    "hat": lambda: keras.initializers.RandomNormal(stddev=1.0),
    "teracon": lambda: keras.initializers.RandomUniform(0.0, 2.0),
}
# Where each method's gates sit in the pre-LN block x + conv2(relu(LN(conv1(relu(LN(x)))))):
#   "conv"        on each conv's output (HAT: a closed channel's weights then cannot reach the task,
#                 which is what makes its protection of earlier tasks hold);
#   "activation"  conv1's gate after the LayerNorm and ReLU that follow conv1, as TERACON's code
#                 gates ReLU(LN(conv)); conv2's on its output, which no LayerNorm follows before
#                 the residual sum (docs/teracon.md).
POSITIONS = {"hat": "conv", "teracon": "activation"}
OPEN = 0.5         # a channel is open for a task when its gate at smax is above this
SATURATED = 0.01   # ... and saturated when it is within this of 0 or 1


def anneal(step, n_steps, smax):
    """s for batch `step` (0-based) of `n_steps`: 1/smax + (smax - 1/smax) * step / n_steps, as both
    released codes compute it (the HAT paper divides by n_steps - 1); restarted every epoch."""
    return 1.0 / smax + (smax - 1.0 / smax) * step / max(n_steps, 1)


class Clamp(keras.constraints.Constraint):
    """Keeps a variable in [-limit, limit]; Keras applies it after every optimizer update."""

    def __init__(self, limit=EMBEDDING_LIMIT):
        self.limit = limit

    def __call__(self, w):
        return ops.clip(w, -self.limit, self.limit)

    def get_config(self):
        return {"limit": self.limit}


class TaskGate(keras.layers.Layer):
    """One task's gate embedding: [convs, channels], clamped to +-6, and a frozen copy of its
    initial value (`initial`), so its statistics can tell how far it moved."""

    def __init__(self, n_convs, channels, method, **kwargs):
        super().__init__(**kwargs)
        self.n_convs, self.channels, self.method = n_convs, channels, method

    def build(self, input_shape=None):
        self.embedding = self.add_weight(name="embedding", shape=(self.n_convs, self.channels),
                                         initializer=INITIALISERS[self.method](), constraint=Clamp())
        self.initial = self.add_weight(name="initial", shape=(self.n_convs, self.channels),
                                       initializer="zeros", trainable=False)
        self.initial.assign(self.embedding)

    def plain(self, s):
        """HAT's gate: sigmoid(s * e), [convs, channels]."""
        return ops.sigmoid(s * self.embedding)

    def get_config(self):
        return {**super().get_config(), "n_convs": self.n_convs, "channels": self.channels, "method": self.method}


class RelationGate(keras.layers.Layer):
    """TERACON's relation-aware gates for a model of `n_tasks` tasks: for task t and conv l,
    z = w[t, l] . [tanh(s e_t), tanh(s e_i), tanh(-s e_i) for each other task i, ascending] + b[t, l]
    per channel (one small linear map per task and conv, shared by its channels), gate = sigmoid(s z).
    Rebuilt, freshly initialised, at every stage (its width grows with the tasks)."""

    def __init__(self, n_tasks, n_convs, **kwargs):
        super().__init__(**kwargs)
        self.n_tasks, self.n_convs = n_tasks, n_convs

    def build(self, input_shape=None):
        width = 2 * self.n_tasks - 1
        self.weight = self.add_weight(name="weight", shape=(self.n_tasks, self.n_convs, width),
                                      initializer=keras.initializers.RandomNormal(stddev=0.01))
        self.bias = self.add_weight(name="bias", shape=(self.n_tasks, self.n_convs),
                                    initializer=keras.initializers.Constant(0.1))

    def gate(self, task, embeddings, s):
        """Task `task`'s gates [convs, channels] from every task's embedding ({number: [convs, C]})."""
        others = [number for number in sorted(embeddings) if number != task]
        rows = [ops.tanh(s * embeddings[task])]
        for number in others:
            rows += [ops.tanh(s * embeddings[number]), ops.tanh(-s * embeddings[number])]
        stacked = ops.stack(rows, axis=-1)  # [convs, C, 2N-1]
        z = ops.einsum("lcj,lj->lc", stacked, self.weight[task - 1]) + ops.expand_dims(self.bias[task - 1], -1)
        return ops.sigmoid(s * z)

    def get_config(self):
        return {**super().get_config(), "n_tasks": self.n_tasks, "n_convs": self.n_convs}


def statistics(model, task):
    """How task `task`'s gates stand: the share of its embedding entries whose sign differs from
    their initial value, and the shares of its channels open (gate > OPEN) and saturated (within
    SATURATED of 0 or 1) at smax, as the model serves the task."""
    gate = model.gates[str(task)]
    changed = np.sign(ops.convert_to_numpy(gate.embedding)) != np.sign(ops.convert_to_numpy(gate.initial))
    served = ops.convert_to_numpy(model.task_gates(task, model.smax))
    return {"sign_changed": float(changed.mean()), "open": float((served > OPEN).mean()),
            "saturated": float(((served < SATURATED) | (served > 1 - SATURATED)).mean())}


def open_channels(model, task):
    """[(open input channels [C], open output channels [C]) for each conv]: which channels of its
    input and output a conv carries for `task` at smax. An input counts as closed only where a gate
    multiplies it directly (TERACON's conv1 gate before conv2); a LayerNorm before a conv mixes every
    channel, so behind one every input is open."""
    served = ops.convert_to_numpy(model.task_gates(task, model.smax)) > OPEN
    every = np.ones(served.shape[1], bool)
    gated_input = model.gate_position == "activation"
    return [(served[l - 1] if gated_input and l % 2 else every, served[l]) for l in range(len(served))]
