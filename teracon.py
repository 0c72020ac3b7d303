"""TERACON (Kim et al., KDD 2023) on the NextItNet backbone: the knowledge-retention loss of a
stage after T1 (docs/teracon.md).

A frozen copy of the model after the previous stage (the teacher) scores the current batch's
input sequences with every earlier task's head; the model being trained (the student) must give
the same logits (mean squared error). Earlier task i uses a random share r_i of the batch's rows
and weighs r_i / sum(r): r_i = 1 - mean over convs of sigmoid(6 cos(teacher's gate of i, the new
task's gate)), so tasks whose gates resemble the new task's are retained less.
"""
import numpy as np
from keras import ops

SHARPNESS = 6.0  # TERACON's utils.sample_ratio: sigmoid(6 * cosine)


def relation_ratio(earlier_gates, new_gates):
    """r = 1 - mean over convs of sigmoid(6 * cos(earlier_gates[l], new_gates[l])), gates [convs, C]."""
    dot = ops.sum(earlier_gates * new_gates, axis=-1)
    norms = ops.sqrt(ops.sum(ops.square(earlier_gates), axis=-1) * ops.sum(ops.square(new_gates), axis=-1))
    cosine = dot / ops.maximum(norms, 1e-12)
    return 1.0 - ops.mean(ops.sigmoid(SHARPNESS * cosine))


def batch_draws(rng, n_earlier, batch_size, n_items, item_limit):
    """What a batch needs beyond its data: for each earlier task a random half of the batch's rows
    in random order (r <= 0.5, so the first floor(B r) of them are the rows it retains), and, when
    T1 has more than `item_limit` items (0: no limit), a uniform sample of that many item ids."""
    draws = {"retain_rows": np.stack([rng.permutation(batch_size)[:batch_size // 2]
                                      for _ in range(n_earlier)]).astype(np.int32)}
    if item_limit and n_items > item_limit:
        draws["retain_items"] = np.sort(rng.choice(n_items, size=item_limit, replace=False)).astype(np.int32)
    return draws


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
    """sum over earlier tasks i of r_i / sum(r) * MSE(student's logits, teacher's) on i's rows."""
    s, tokens, rows = batch["s"], batch["tokens"], batch["retain_rows"]
    new_gates = ops.stop_gradient(student.task_gates(task, s))
    ratios = [relation_ratio(ops.stop_gradient(teacher.task_gates(i, s)), new_gates) for i in range(1, task)]
    total = sum(ratios)
    batch_size, half = tokens.shape[0], rows.shape[1]
    loss = 0.0
    for i, ratio in zip(range(1, task), ratios):
        chosen = ops.take(tokens, rows[i - 1], axis=0)
        kept = ops.cast(ops.arange(half, dtype="float32") < ops.maximum(ops.floor(batch_size * ratio), 1.0), "float32")
        items = batch.get("retain_items") if i == 1 else None
        gap = logits(student, chosen, i, s, items) - ops.stop_gradient(logits(teacher, chosen, i, s, items))
        per_row = ops.mean(ops.square(gap), axis=-1)
        loss = loss + ratio / total * ops.sum(kept * per_row) / ops.maximum(ops.sum(kept), 1.0)
    return loss
