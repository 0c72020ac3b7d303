"""Strong simple baselines, fitted on the examples a stage trains on and scored on the same
held-out split with the same metrics (and tie rule) as every method:

  popularity / majority   items ranked by training count; the most frequent training label
  Markov chain (T1)       items ranked by how often they followed the user's last item in the
                          training users' sequences, popularity breaking ties (and the fallback)
  co-occurrence (T2, T3)  targets ranked by the count of (source item, target) pairs in training,
                          summed over the user's distinct source items, popularity breaking ties
  logistic regression     multinomial, L2, on the user's source items as a 0/1 vector; its
  (classification)        inverse L2 strength C chosen on the validation slice

A neural model that loses to these is undertrained or broken until shown otherwise.
"""
import numpy as np
import scipy.sparse as sp

import metrics
from data_loader import N_RESERVED, PAD

ROWS_PER_BLOCK = 256                      # held-out rows scored at a time (dense [rows, targets])
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SELECTION_SHARE = 0.1                     # without a validation slice, this share of training picks C


def popularity(data):
    """Items ranked by training popularity (ties in the item's favour), or the majority label."""
    counts = data.train_target_counts()
    _, truth = data.test_inputs()
    if data.kind == "class":
        return {"accuracy": float(np.mean(truth == counts.argmax()))}
    candidates = np.sort(np.delete(counts, list(data.excluded_targets)))
    ranks = len(candidates) - np.searchsorted(candidates, counts[truth], side="right")
    return metrics.ranking_metrics(metrics.excluded_truth_last(ranks, truth, data.excluded_targets, len(counts)))


def tie_breaker(counts):
    """Training popularity scaled below 1: added to integer counts, it only breaks their ties."""
    return counts / (counts.max() + 1.0)


def ranked_by(score_rows, truth, excluded=()):
    """Metrics of ranking every column of each block of scores [rows, targets] (score_rows yields them)."""
    ranks = [metrics.ranks_of(scores, truth[start:start + len(scores)], excluded) for start, scores in score_rows]
    return metrics.ranking_metrics(np.concatenate(ranks) if ranks else np.zeros(0))


def transitions(sequences, n_items):
    """Sparse [n_items, n_items] counts of item a directly followed by item b (padding left out)."""
    before, after = sequences[:, :-1].ravel(), sequences[:, 1:].ravel()
    kept = (before != PAD) & (after != PAD)
    return sp.csr_matrix((np.ones(int(kept.sum())), (before[kept], after[kept])), shape=(n_items, n_items))


def markov_chain(data):
    """T1: the first-order Markov chain of the training users' sequences."""
    counts = transitions(data.train_ids, data.n_targets)
    fallback = tie_breaker(data.train_target_counts().astype(np.float64))
    tokens, truth = data.test_inputs()
    last = tokens[:, -1]

    def blocks():
        for start in range(0, len(last), ROWS_PER_BLOCK):
            yield start, counts[last[start:start + ROWS_PER_BLOCK]].toarray() + fallback

    return ranked_by(blocks(), truth, data.excluded_targets)


def bag_of_items(sources, n_items):
    """Sparse 0/1 [rows, n_items]: which items occur in each source sequence (reserved ids left out)."""
    rows = np.repeat(np.arange(len(sources)), sources.shape[1])
    items = sources.ravel()
    kept = items >= N_RESERVED
    matrix = sp.csr_matrix((np.ones(int(kept.sum())), (rows[kept], items[kept])), shape=(len(sources), n_items))
    matrix.data[:] = 1.0  # an item repeated in one sequence counts once
    return matrix


def examples(data, part):
    """Bag-of-items matrix and targets of a transfer task's "train", "valid" or "test" examples."""
    lines, targets = {"train": (data.train_lines, data.train_targets), "valid": (data.valid_lines, data.valid_targets),
                      "test": (data.test_lines, data.test_targets)}[part]
    return bag_of_items(data.sources[lines], n_items(data)), targets


def n_items(data):
    return max(int(data.sources.max()) + 1, N_RESERVED)


def cooccurrence(data):
    """T2/T3: targets scored by their training co-occurrence with the user's source items."""
    train_items, train_targets = examples(data, "train")
    one_hot = sp.csr_matrix((np.ones(len(train_targets)), (np.arange(len(train_targets)), train_targets)),
                            shape=(len(train_targets), data.n_targets))
    pairs = (train_items.T @ one_hot).tocsr()  # [items, targets] counts of (source item, target)
    fallback = tie_breaker(data.train_target_counts().astype(np.float64))
    test_items, truth = examples(data, "test")

    def blocks():
        for start in range(0, test_items.shape[0], ROWS_PER_BLOCK):
            yield start, (test_items[start:start + ROWS_PER_BLOCK] @ pairs).toarray() + fallback

    return ranked_by(blocks(), truth)


def logistic_regression(data, seed=0):
    """Classification: bag-of-items logistic regression, C chosen on the validation slice (or on
    the last SELECTION_SHARE of the training examples, then refitted on all of them)."""
    train_x, train_y = examples(data, "train")
    test_x, truth = examples(data, "test")
    valid = examples(data, "valid") if data.n_valid else None
    return fit_logistic(train_x, train_y, valid, test_x, truth, data.n_targets, seed)


def fit_logistic(train_x, train_y, valid, test_x, truth, n_classes, seed=0):
    """Multinomial logistic regression with L2, C from C_GRID chosen on `valid` = (x, y) (None: on
    the last SELECTION_SHARE of the training rows, then refitted on all of them); held-out metrics."""
    from sklearn.linear_model import LogisticRegression

    if valid is not None:
        fit_x, fit_y, (valid_x, valid_y) = train_x, train_y, valid
    else:
        cut = train_x.shape[0] - max(1, int(SELECTION_SHARE * train_x.shape[0]))
        fit_x, fit_y, valid_x, valid_y = train_x[:cut], train_y[:cut], train_x[cut:], train_y[cut:]

    model = LogisticRegression(max_iter=2000, random_state=seed, warm_start=True)  # each C starts at the last
    fitted, scores = {}, {}
    for c in C_GRID:
        model.set_params(C=c).fit(fit_x, fit_y)
        fitted[c] = (model.coef_.copy(), model.intercept_.copy())
        scores[c] = float(np.mean(model.predict(valid_x) == valid_y))
    best = max(C_GRID, key=lambda c: (scores[c], -c))  # ties: the stronger penalty
    model.coef_, model.intercept_ = (x.copy() for x in fitted[best])
    if valid is None:
        model.set_params(C=best).fit(train_x, train_y)
    probabilities = np.zeros((len(truth), n_classes))
    probabilities[:, model.classes_] = model.predict_proba(test_x)
    return {**metrics.classification_metrics(probabilities, truth, seed), "C": best, "valid_accuracy": scores[best]}


def strong(data, seed=0):
    """The task's strong simple baseline: (name, metrics)."""
    if data.kind == "next_item":
        return "Markov chain", markov_chain(data)
    if data.kind == "item":
        return "co-occurrence", cooccurrence(data)
    return "logistic regression", logistic_regression(data, seed)


def trivial_name(data):
    return "majority" if data.kind == "class" else "popularity"
