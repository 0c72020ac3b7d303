"""Held-out metrics (docs/design.md section 7), computed from score matrices in numpy.

Ranks are 0-based: the number of candidates scoring strictly higher than the true one.
"""
import hashlib

import numpy as np

from data_loader import other_labels

TOP_K = 5
RANKING = (f"MRR@{TOP_K}", f"HR@{TOP_K}", f"NDCG@{TOP_K}")  # ranking_metrics's keys


def reported(kind):
    """The metrics reported for a kind of task (tasks.Task.kind)."""
    return ("accuracy",) if kind == "class" else RANKING


def main_metric(kind):
    """The metric a kind of task is compared on and forgets on."""
    return "accuracy" if kind == "class" else f"HR@{TOP_K}"


def ranks_of(scores, truth, excluded=()):
    """0-based rank of truth[i] among the columns of scores[i], ignoring the `excluded` columns. A
    truth that is itself excluded (a held-out item a k-core filter turned into <unk>) cannot be
    recommended: it ranks last, a miss for every method alike."""
    scores = np.asarray(scores)
    true_scores = scores[np.arange(len(truth)), truth]
    higher = scores > true_scores[:, None]
    if len(excluded):
        higher[:, list(excluded)] = False
    return excluded_truth_last(higher.sum(axis=1), truth, excluded, scores.shape[1])


def excluded_truth_last(ranks, truth, excluded, n_columns):
    """`ranks`, with every row whose truth is among the `excluded` ids moved to the last rank."""
    return np.where(np.isin(truth, list(excluded)), n_columns, ranks)


def ranking_metrics(ranks, k=TOP_K):
    """MRR@k, HR@k and NDCG@k with one relevant item per row."""
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < k
    return {
        f"MRR@{k}": float(np.mean(np.where(hit, 1.0 / (ranks + 1.0), 0.0))) if len(ranks) else 0.0,
        f"HR@{k}": float(np.mean(hit)) if len(ranks) else 0.0,
        f"NDCG@{k}": float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0))) if len(ranks) else 0.0,
    }


def classification_metrics(scores, truth, seed):
    """`accuracy`: argmax over all classes; `pairwise_accuracy`: true label beats one random other."""
    scores = np.asarray(scores)
    truth = np.asarray(truth)
    rows = np.arange(len(truth))
    others = other_labels(np.random.default_rng(seed), truth, scores.shape[1])
    return {
        "accuracy": float(np.mean(scores.argmax(axis=1) == truth)),
        "pairwise_accuracy": float(np.mean(scores[rows, truth] > scores[rows, others])),
    }


class ScoreHasher:
    """SHA-256 over the float32 score matrix, fed row block by row block in held-out order."""

    def __init__(self):
        self._sha = hashlib.sha256()

    def update(self, scores):
        self._sha.update(np.ascontiguousarray(scores, dtype=np.float32).tobytes())

    def hexdigest(self):
        return self._sha.hexdigest()


# Recorded with every hash but without effect on it: evaluation runs in fixed blocks of rows.
NEUTRAL_SETTINGS = ("eval_batch_size",)


def settings_differences(a, b):
    """Why two score hashes cannot be compared: each evaluation setting that differs, or []."""
    if not a or not b:
        return ["evaluation settings not recorded"]
    keys = sorted((set(a) | set(b)) - set(NEUTRAL_SETTINGS))
    return [f"{k} {a.get(k)} vs {b.get(k)}" for k in keys if a.get(k) != b.get(k)]


def hash_verdict(evaluations):
    """'bit-identical', 'changed' or 'not comparable: <reason>' for one task's evaluations
    [(scores_sha256, eval_settings), ...]: a hash says nothing next to one made under other settings."""
    first_hash, first_settings = evaluations[0]
    for sha, settings in evaluations[1:]:
        differences = settings_differences(first_settings, settings)
        if differences:
            return "not comparable: " + "; ".join(differences)
    return "bit-identical" if all(sha == first_hash for sha, _ in evaluations) else "changed"


def forgetting(series, metric_of):
    """Forgetting as continual-learning papers report it, from {task: [its metric at its own stage,
    then after each later stage, in order]}, each task scored by metric_of(task). Per task with a later
    stage: "forgetting", the best it scored before the last stage (its own included) minus the last
    (Chaudhry et al., 2018), and "largest_drop", the largest (own - later) over its later stages
    (negative: never below its own); the two differ: a task that rose, then fell back above its own,
    has forgotten but not dropped. Per metric, over those tasks: "bwt", the mean of (last - own)
    (Lopez-Paz and Ranzato, 2017), and "mean_forgetting"; metrics never average into one number."""
    later = {task: values for task, values in series.items() if len(values) > 1}
    drops = {task: max(values[0] - v for v in values[1:]) for task, values in later.items()}
    forgotten = {task: max(values[:-1]) - values[-1] for task, values in later.items()}
    by_metric = {}
    for task in later:
        by_metric.setdefault(metric_of(task), []).append(task)
    return {"largest_drop": drops, "forgetting": forgotten,
            "bwt": {m: sum(later[t][-1] - later[t][0] for t in ts) / len(ts) for m, ts in by_metric.items()},
            "mean_forgetting": {m: sum(forgotten[t] for t in ts) / len(ts) for m, ts in by_metric.items()}}
