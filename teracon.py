"""TERACON (Kim et al., KDD 2023) on the NextItNet backbone: the knowledge-retention loss of a
stage after T1 (docs/teracon.md).

A frozen copy of the model after the previous stage (the teacher) scores the current batch's
input sequences with every earlier task's head; the model being trained (the student) must give
the same logits (mean squared error). Earlier task i uses a random share r_i of the batch's rows
and weighs r_i / sum(r): r_i = 1 - mean over convs of sigmoid(6 cos(teacher's gate of i, the new
task's gate)), so tasks whose gates resemble the new task's are retained less. As in TERACON's
code, a batch uses the ratios of the batch before it (0.9 before the first).
"""
import numpy as np
from keras import ops

import objective as objectives

SHARPNESS = 6.0  # TERACON's utils.sample_ratio: sigmoid(6 * cosine)
FIRST_RATIO = 0.9  # TERACON's train_teracon.py: every earlier task's ratio before the first batch


def relation_ratio(earlier_gates, new_gates):
    """r = 1 - mean over convs of sigmoid(6 * cos(earlier_gates[l], new_gates[l])), gates [convs, C]."""
    dot = ops.sum(earlier_gates * new_gates, axis=-1)
    norms = ops.sqrt(ops.sum(ops.square(earlier_gates), axis=-1) * ops.sum(ops.square(new_gates), axis=-1))
    cosine = dot / ops.maximum(norms, 1e-12)
    return 1.0 - ops.mean(ops.sigmoid(SHARPNESS * cosine))


class Retention:
    """What each batch of a stage after T1 adds to its data (objective.BatchExtras), with
    TERACON's state carried from batch to batch: the relation ratios r_i of the earlier tasks,
    FIRST_RATIO before the first batch, and after every batch the ratios of the gates as they were
    before its step (TERACON's train_teracon.py computes them in that batch's forward pass and uses
    them for the next). For each earlier task, the rows it retains: the first floor(B r_i) (at
    least one) of its own random permutation of the batch's rows, and its weight r_i / sum(r);
    with more than `item_limit` T1 items (0: no limit), a uniform sample of that many item ids."""

    def __init__(self, student, teacher, task, batch_size, item_limit):
        self.student, self.teacher, self.task = student, teacher, task
        self.batch_size, self.item_limit = batch_size, item_limit
        self.ratios = [FIRST_RATIO] * (task - 1)

    def __call__(self, rng, s):
        ratios, size = np.asarray(self.ratios, np.float64), self.batch_size
        counts = np.maximum(np.floor(size * ratios), 1).astype(np.int32)
        capacity = size // 2 if counts.max() <= size // 2 else size  # two shapes: few retracings
        found = {"retain_rows": np.stack([rng.permutation(size)[:capacity] for _ in ratios]).astype(np.int32),
                 "retain_counts": counts, "retain_weights": (ratios / ratios.sum()).astype(np.float32)}
        n_items = self.teacher.head(1).n_items
        if self.item_limit and n_items > self.item_limit:
            found["retain_items"] = np.sort(rng.choice(n_items, size=self.item_limit, replace=False)).astype(np.int32)
        new_gates = self.student.task_gates(self.task, s)
        self.ratios = [float(relation_ratio(self.teacher.task_gates(i, s), new_gates)) for i in range(1, self.task)]
        return found

    def state(self):
        return {"ratios": self.ratios}

    def load(self, state):
        self.ratios = list(state["ratios"])


def logits(model, tokens, task, s, items=None):
    """Task `task`'s logits at the last position, float32: T1 over every item (or over `items`)
    from the source tokens alone, a later task over its targets from the tokens and separator."""
    if task > 1:
        return ops.cast(model.head(task)(model.user(tokens, task, "full", s)), "float32")
    head = model.head(1)
    weight, bias = head.weight, head.bias
    if items is not None:
        weight, bias = ops.take(weight, items, axis=0), ops.take(bias, items, axis=0)
    user = ops.cast(model.user(tokens[:, :-1], 1, "full", s), "float32")
    return ops.matmul(user, ops.transpose(weight)) + bias


def retention(student, teacher, batch, task):
    """sum over earlier tasks i of w_i * MSE(student's logits, teacher's) over i's retained rows,
    with the rows, their counts and the weights w_i of the batch (Retention)."""
    s, tokens, rows = batch["s"], batch["tokens"], batch["retain_rows"]
    positions = ops.arange(ops.shape(rows)[1], dtype="int32")
    loss = 0.0
    for i in range(1, task):
        chosen = ops.take(tokens, rows[i - 1], axis=0)
        kept = ops.cast(positions < batch["retain_counts"][i - 1], "float32")
        items = batch.get("retain_items") if i == 1 else None
        gap = logits(student, chosen, i, s, items) - ops.stop_gradient(logits(teacher, chosen, i, s, items))
        per_row = ops.mean(ops.square(gap), axis=-1)
        loss = loss + batch["retain_weights"][i - 1] * ops.sum(kept * per_row) / ops.maximum(ops.sum(kept), 1.0)
    return loss


def objective(run):
    """A TERACON stage's objective (objective.py): after T1, the task's loss plus alpha times the
    retention of the earlier tasks' logits against the teacher (the model after the previous stage)."""
    model, teacher, number, config = run.model, run.teacher, run.number, run.config
    if teacher is None:
        return objectives.Objective(objectives.task_loss(run), objectives.batch_extras(run),
                                    objectives.shared_scales(run))
    task_loss = objectives.task_loss(run)
    kept = Retention(model, teacher, number, min(config["batch_size"], run.data.n_train), config["retention_items"])
    loss = lambda batch: task_loss(batch) + config["alpha"] * retention(model, teacher, batch, number)  # noqa: E731
    return objectives.Objective(loss, objectives.batch_extras(run, kept), objectives.shared_scales(run),
                                frozen=tuple(teacher.variables), at_inference={"s": np.float32(config["smax"])})
