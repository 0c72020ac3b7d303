"""Per-task weight ownership of the conv kernels (docs/design.md section 6).

Each kernel has an owner map of its shape: 0 = free, k = owned by task k. Pruning after task k's
training phase hands task k the `floor(share_k * kernel.size)` free weights with the largest |w|,
where share_k = prod_{j<k} p_j * (1 - p_k) for the per-task prune ratios p_j. Owned weights can
never be selected again, so owners stay disjoint by construction. A map can have ratios of its own
(`own_ratios`: the item embedding when it is shared like the kernels, docs/extension.md).
"""
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np


class OwnershipError(ValueError):
    """An owner map breaks an invariant (counts, overlap, unknown owner)."""


def keep_share(prune_ratios, task):
    """Exact share of a kernel that `task` (1-based) keeps: prod_{j<k} p_j * (1 - p_k)."""
    ratios = [Fraction(str(p)) for p in prune_ratios[:task]]
    return math.prod(ratios[:-1], start=Fraction(1)) * (1 - ratios[-1])


def keep_count(prune_ratios, task, size):
    return math.floor(keep_share(prune_ratios, task) * size)


def prune(kernel, owner, task, prune_ratios):
    """New owner map: `task` takes the largest-|w| free weights of `kernel` (ties by position)."""
    owner = np.array(owner, dtype=np.int8, copy=True)
    if (owner == task).any():
        raise OwnershipError(f"task {task} already owns weights")
    free = np.flatnonzero(owner.ravel() == 0)
    n_keep = keep_count(prune_ratios, task, owner.size)
    if n_keep > free.size:
        raise OwnershipError(f"task {task} needs {n_keep} free weights, only {free.size} left")
    magnitude = np.abs(np.asarray(kernel, dtype=np.float32).ravel()[free])
    chosen = free[np.argsort(-magnitude, kind="stable")[:n_keep]]
    owner.ravel()[chosen] = task
    return owner


def check(owners, prune_ratios, own_ratios=None):
    """Raise OwnershipError unless every owner map has exactly the counts the ratios prescribe
    (`own_ratios`: {name: ratios} of the maps with ratios of their own)."""
    n_tasks = len(prune_ratios)
    for name, owner in owners.items():
        ratios = (own_ratios or {}).get(name, prune_ratios)
        if len(ratios) != n_tasks:
            raise OwnershipError(f"{name}: {len(ratios)} prune ratios for {n_tasks} tasks")
        values = np.asarray(owner)
        if values.min() < 0 or values.max() > n_tasks:
            raise OwnershipError(f"{name}: owner ids outside 0..{n_tasks}")
        counts = np.bincount(values.ravel().astype(np.int64), minlength=n_tasks + 1)
        for task in range(1, n_tasks + 1):
            expected = keep_count(ratios, task, values.size)
            if counts[task] != expected:
                raise OwnershipError(f"{name}: task {task} owns {counts[task]} weights, expected {expected}")


def report(owners, prune_ratios):
    """Short per-task table: share of every kernel each task owns, and what stays free."""
    total = sum(np.asarray(o).size for o in owners.values())
    counts = np.zeros(len(prune_ratios) + 1, dtype=np.int64)
    for owner in owners.values():
        counts += np.bincount(np.asarray(owner).ravel().astype(np.int64), minlength=counts.size)
    lines = [f"ownership of {len(owners)} kernels, {total:,} weights",
             "task  prune_ratio  share_per_kernel  weights"]
    for task, ratio in enumerate(prune_ratios, start=1):
        lines.append(f"T{task:<4} {ratio:<12} {float(keep_share(prune_ratios, task)):<17.4%} {counts[task]:,}")
    lines.append(f"free  {'':<12} {counts[0] / total:<17.4%} {counts[0]:,}")
    return "\n".join(lines)


def save(directory, owners, prune_ratios, own_ratios=None):
    """Write ownership.npz ({map name: int8 owner map}) and ownership.json (ratios, counts)."""
    directory = Path(directory)
    np.savez(directory / "ownership.npz", **{name: np.asarray(o, dtype=np.int8) for name, o in owners.items()})
    counts = {name: np.bincount(np.asarray(o).ravel().astype(np.int64), minlength=len(prune_ratios) + 1).tolist()
              for name, o in owners.items()}
    saved = {"prune_ratios": list(prune_ratios), "counts": counts}
    if own_ratios:
        saved["own_ratios"] = {name: list(ratios) for name, ratios in own_ratios.items()}
    with open(directory / "ownership.json", "w") as f:
        json.dump(saved, f, indent=1)


def load(directory):
    """Owner maps and prune ratios saved by `save`, checked against the invariants."""
    directory = Path(directory)
    with np.load(directory / "ownership.npz") as data:
        owners = {name: data[name] for name in data.files}
    with open(directory / "ownership.json") as f:
        saved = json.load(f)
    check(owners, saved["prune_ratios"], saved.get("own_ratios"))
    return owners, saved["prune_ratios"]


def load_own_ratios(directory):
    """{map name: prune ratios} of the maps `save` stored with ratios of their own ({} if none)."""
    with open(Path(directory) / "ownership.json") as f:
        return json.load(f).get("own_ratios", {})
