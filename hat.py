"""HAT (Serra et al., ICML 2018) on the NextItNet backbone: what a stage adds to the task loss and
to the optimizer update (docs/hat.md).

After tasks 1..K-1, the cumulative gate of conv l's output channel c is the largest of their
gates at smax. Task K's update of a conv weight is scaled by 1 - that cumulative gate, so the
weights earlier tasks use are (nearly) frozen; the regulariser keeps task K's gates off the
channels still free. Every input of a conv passes through a LayerNorm, which mixes channels, so
only the output channel's gate is used (HAT's rule for a network's first layer).

The gate embeddings train as HAT's released code trains them (`GateUpdate`): plain SGD at lr
0.05 on a gradient compensated for the annealing of s, every gradient clipped to a global norm of
10,000 first, and the embedding clamped to +-6 after the step; everything else the stage trains
keeps the stage's Adam.
"""
import numpy as np
from keras import ops

import gates
import objective as objectives

LEARNING_RATE = 0.05  # HAT's src/approaches/hat.py: lr of its SGD
CLIP_NORM = 10000.0   # ... clipgrad: the global gradient norm is clipped to this before the step
COSH_LIMIT = 50.0     # ... thres_cosh: s * e is clamped to +-this inside the compensation's cosh
# ... its schedule (Appr.train): batch 64, up to 100 epochs; after 5 epochs without a lower validation loss
# the rate is divided by 3, and training stops once it would fall below 1e-4; the lowest loss's model is kept.
RELEASED_TRAINING = {"optimizer": "sgd", "learning_rate": LEARNING_RATE, "batch_size": 64, "epochs": 100,
                     "patience": 0, "lr_decay_patience": 5, "lr_decay_factor": 3.0, "lr_min": 1e-4,
                     "select_on": "loss"}


def compensated(embedding, grad, s, smax):
    """HAT's compensation of a gate embedding's gradient for the annealing of s:
    grad * smax / s * (cosh(clip(s e, +-50)) + 1) / (cosh(e) + 1)."""
    numerator = ops.cosh(ops.clip(s * embedding, -COSH_LIMIT, COSH_LIMIT)) + 1.0
    return grad * (smax / s) * numerator / (ops.cosh(embedding) + 1.0)


class GateUpdate:
    """HAT's update of a gate embedding, beside the stage's optimizer (trainer.TrainStep's
    `side_rules`): `gradient` compensates the raw gradient (before the global-norm clip),
    `apply` takes the SGD step and clamps. The step's rate is the batch's "learning_rate" where
    the stage trains with SGD (HAT's release: one SGD, one decaying rate), else `learning_rate`."""

    def __init__(self, smax, learning_rate=LEARNING_RATE, limit=gates.EMBEDDING_LIMIT):
        self.smax, self.learning_rate, self.limit = smax, learning_rate, limit

    def gradient(self, value, grad, batch):
        return compensated(value, grad, ops.cast(batch["s"], value.dtype), self.smax)

    def apply(self, value, grad, batch=None):
        rate = self.learning_rate
        if batch and "learning_rate" in batch:
            rate = ops.cast(batch["learning_rate"], value.dtype)
        return ops.clip(value - rate * grad, -self.limit, self.limit)


def side_rules(model, task, smax):
    """{id(variable): GateUpdate} for the gate embedding `task` trains."""
    return {id(model.gates[str(task)].embedding): GateUpdate(smax)}


def cumulative_gates(model, task, smax):
    """The largest gate of tasks 1..task-1 at smax, per conv and channel ([convs, C]); None for T1."""
    earlier = [ops.convert_to_numpy(model.task_gates(number, smax)) for number in range(1, task)]
    return np.max(earlier, axis=0) if earlier else None


def regulariser(model, task, s, cumulative):
    """sum(a * (1 - cumulative)) / sum(1 - cumulative) over every gated channel, with `task`'s gates
    a at `s`; for T1 (no cumulative gates) the mean gate."""
    a = model.task_gates(task, s)
    if cumulative is None:
        return ops.mean(a)
    free = ops.convert_to_tensor(1.0 - cumulative, dtype=a.dtype)
    return ops.sum(a * free) / ops.maximum(ops.sum(free), 1e-12)


def update_scales(model, cumulative):
    """{id(kernel variable): 1 - cumulative gate of its output channels, shaped [1, 1, C]}: the
    factor on every optimizer update of the conv kernels (trainer.TrainStep)."""
    if cumulative is None:
        return {}
    return {id(conv.kernel): (1.0 - cumulative[l]).astype(np.float32)[None, None, :]
            for l, conv in enumerate(model.backbone.convs)}


def objective(run):
    """A HAT stage's objective (objective.py): the task's loss plus c times the regulariser against the
    earlier tasks' gates, the kernels' updates scaled by 1 - those gates, and the gate embedding on
    GateUpdate after a global-norm clip."""
    model, number, config = run.model, run.number, run.config
    cumulative = cumulative_gates(model, number, config["smax"])
    task_loss = objectives.task_loss(run)
    return objectives.Objective(
        lambda batch: task_loss(batch) + config["hat_c"] * regulariser(model, number, batch["s"], cumulative),
        objectives.batch_extras(run), {**update_scales(model, cumulative), **objectives.shared_scales(run)},
        side_rules(model, number, config["smax"]), CLIP_NORM, at_inference={"s": np.float32(config["smax"])})
