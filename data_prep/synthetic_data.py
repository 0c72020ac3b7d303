"""Synthetic task files with planted, learnable structure (`python prepare_data.py synthetic`).

All randomness comes from one numpy Generator seeded with --seed, drawn in a fixed
order, so the same arguments give byte-identical files.

1. Clusters. K = clip(items // 8, 2, 20) latent interest clusters. Items are split
   into K equal-size clusters at random; inside a cluster, popularity is Zipf
   (weight 1/rank). Click targets (max(items // 2, 4K)) and like targets
   (max(items // 5, 3K)) are split into the same K clusters the same way, so every
   cluster has its own preferred targets.
2. Users. Primary cluster drawn with weight 1/sqrt(cluster rank); with probability
   0.5 a second, different interest cluster (otherwise secondary = primary).
   Sequence length L = min(100, 10 + floor(Exponential(mean 70))): about a quarter
   of users have 100 items, the rest are left-padded with `0`.
3. T1 next item. Every item has S = 4 fixed successors inside its own cluster
   (picked once, biased towards popular items) used with probabilities
   .4/.3/.2/.1. The first item is a popularity draw from an interest cluster
   (primary with probability 0.7, else secondary). Each next item follows the
   previous item's successor table with probability 0.7, otherwise it jumps to a new
   popularity draw from an interest cluster. So "likely successors of the last item"
   predicts the next item far better than global popularity.
4. T2 clicks / T3 likes. A user gets 1-5 distinct targets (clicks: probabilities
   .50/.24/.14/.09/.03; likes: .88/.08/.03/.01). Each target is, by a mixture:
   - recent: the fixed "linked" target of one of the last 5 items (every item has one
     linked target in its own cluster); clicks 0.2, likes 0.15;
   - interest: a popularity draw from an interest cluster's targets; clicks 0.6,
     likes 0.7;
   - noise: a popularity draw from a uniformly random cluster; the rest.
5. T4 gender / T5 age / T6 life status depend on the primary cluster only. Each
   cluster has a label distribution (1 - m) * base + m * onehot(peak); peaks are
   dealt to clusters so that each peak label covers a fixed share of users.
   Gender: base (.8, .2), peaks 70% label 1 and 30% label 2, m = .7, giving
   about 73/27 overall. Age: 8 labels, life status:
   6 labels, peak shares = base, m = .35. Knowing the cluster beats the majority
   class by roughly 15-25 accuracy points.
6. Files. T1 has every user. T2 keeps each user with probability 0.95, T3 with 0.2,
   and T4-T6 share one 0.998 "has profile" mask; all keep T1's user order and the
   exact T1 source line.
7. Naming. Item and target tokens are random permutations of 1..n (token number says
   nothing about popularity); padding is `0`; class labels are `1`..`C`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks import FILES
from data_prep.task_files import SEQ_LEN, encode_lines, write_atomically

# Planted-structure constants (see module docstring).
MAX_CLUSTERS = 20
ITEMS_PER_CLUSTER_MIN = 8
SECONDARY_INTEREST_PROB = 0.5
PRIMARY_JUMP_PROB = 0.7
FOLLOW_SUCCESSOR_PROB = 0.7
SUCCESSOR_PROBS = (0.4, 0.3, 0.2, 0.1)
SUCCESSOR_POPULARITY_BIAS = 0.5
MIN_LEN, MEAN_EXTRA_LEN = 10, 70.0
RECENT_WINDOW = 5
CANDIDATES_PER_USER = 10


@dataclass(frozen=True)
class TargetTask:
    count_probs: tuple  # P(user has 1, 2, ... targets)
    recent_prob: float  # target linked to a recent item
    interest_prob: float  # target from an interest cluster; the rest is noise
    keep_user_prob: float  # share of users present in the file


CLICKS = TargetTask((0.50, 0.24, 0.14, 0.09, 0.03), 0.20, 0.60, 0.95)
LIKES = TargetTask((0.88, 0.08, 0.03, 0.01), 0.15, 0.70, 0.20)


@dataclass(frozen=True)
class LabelTask:
    base: tuple  # label distribution every cluster shares
    peak_shares: tuple  # share of users whose cluster peaks at each label
    peak_mass: float  # weight of the cluster's own peak label


GENDER = LabelTask((0.8, 0.2), (0.7, 0.3), 0.7)
AGE_BASE = (0.04, 0.12, 0.22, 0.22, 0.16, 0.12, 0.08, 0.04)
AGE = LabelTask(AGE_BASE, AGE_BASE, 0.35)
LIFE_BASE = (0.30, 0.24, 0.18, 0.13, 0.09, 0.06)
LIFESTATUS = LabelTask(LIFE_BASE, LIFE_BASE, 0.35)
PROFILE_KEEP_PROB = 0.998


class ClusteredCatalog:
    """Objects (items or targets) split into clusters, Zipf popularity inside each."""

    def __init__(self, n_objects: int, n_clusters: int, rng: np.random.Generator):
        # Balanced random partition: object -> cluster; members sorted by cluster.
        self.cluster_of = rng.permutation(np.arange(n_objects) % n_clusters)
        self.members = np.argsort(self.cluster_of, kind="stable")
        sizes = np.bincount(self.cluster_of, minlength=n_clusters)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        rank = np.arange(n_objects) - np.repeat(self.offsets[:-1], sizes)
        self.rank_in_cluster = np.empty(n_objects, dtype=np.int64)
        self.rank_in_cluster[self.members] = rank
        self.weight = 1.0 / (1.0 + self.rank_in_cluster)  # Zipf, unnormalised
        self._cdf = self._shifted_cdf(sizes)

    def _shifted_cdf(self, sizes: np.ndarray) -> np.ndarray:
        """Concatenated per-cluster CDFs, cluster c's shifted to (c, c+1]."""
        w = self.weight[self.members]
        cluster_total = np.add.reduceat(w, self.offsets[:-1])
        within = np.cumsum(w) - np.repeat(np.cumsum(cluster_total) - cluster_total, sizes)
        cdf = within / np.repeat(cluster_total, sizes)
        cdf[self.offsets[1:] - 1] = 1.0  # exact upper ends
        return cdf + np.repeat(np.arange(len(sizes)), sizes)

    def sample(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One popularity-weighted object from each given cluster."""
        u = rng.random(clusters.shape)
        pos = np.searchsorted(self._cdf, clusters + u, side="right")
        pos = np.clip(pos, self.offsets[clusters], self.offsets[clusters + 1] - 1)
        return self.members[pos]


def successor_table(items: ClusteredCatalog, n_successors: int,
                    rng: np.random.Generator) -> np.ndarray:
    """[items, S]: distinct same-cluster successors, strongest first (Gumbel top-S)."""
    table = np.empty((len(items.cluster_of), n_successors), dtype=np.int64)
    for start, stop in zip(items.offsets[:-1], items.offsets[1:]):
        members = items.members[start:stop]
        log_w = (SUCCESSOR_POPULARITY_BIAS * np.log(items.weight[members])).astype(np.float32)
        uniform = rng.random((len(members), len(members)), dtype=np.float32)
        scores = log_w[None, :] - np.log(-np.log(uniform + np.float32(1e-12)))  # + Gumbel
        np.fill_diagonal(scores, -np.inf)  # no self-loops
        top = np.argpartition(-scores, n_successors - 1, axis=1)[:, :n_successors]
        strongest_first = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        table[members] = members[np.take_along_axis(top, strongest_first, 1)]
    return table


def cluster_popularity(n_clusters: int) -> np.ndarray:
    """Share of users whose primary cluster is each cluster (1/sqrt(rank))."""
    w = 1.0 / np.sqrt(np.arange(1, n_clusters + 1))
    return w / w.sum()


def draw_users(n_users: int, n_clusters: int, rng: np.random.Generator):
    """Primary and secondary interest clusters and sequence lengths."""
    primary = rng.choice(n_clusters, size=n_users, p=cluster_popularity(n_clusters))
    shift = rng.integers(1, n_clusters, size=n_users)  # any cluster but primary
    has_second = rng.random(n_users) < SECONDARY_INTEREST_PROB
    secondary = np.where(has_second, (primary + shift) % n_clusters, primary)
    extra = np.floor(rng.exponential(MEAN_EXTRA_LEN, size=n_users)).astype(np.int64)
    lengths = np.minimum(SEQ_LEN, MIN_LEN + extra)
    return primary, secondary, lengths


def interest_clusters(primary, secondary, rng):
    """Per user, the primary cluster w.p. PRIMARY_JUMP_PROB, else the secondary."""
    return np.where(rng.random(primary.shape) < PRIMARY_JUMP_PROB, primary, secondary)


def draw_sequences(items, successors, primary, secondary, lengths, rng):
    """[users, 100] item indices (-1 = padding), left-padded, lengths as given."""
    n_users = len(primary)
    succ_cdf = np.cumsum(SUCCESSOR_PROBS[:successors.shape[1]])
    succ_cdf /= succ_cdf[-1]
    steps = np.empty((n_users, SEQ_LEN), dtype=np.int64)
    steps[:, 0] = items.sample(interest_clusters(primary, secondary, rng), rng)
    for t in range(1, SEQ_LEN):
        slot = np.minimum(np.searchsorted(succ_cdf, rng.random(n_users), side="right"),
                          len(succ_cdf) - 1)
        followed = successors[steps[:, t - 1], slot]
        jumped = items.sample(interest_clusters(primary, secondary, rng), rng)
        follow = rng.random(n_users) < FOLLOW_SUCCESSOR_PROB
        steps[:, t] = np.where(follow, followed, jumped)
    # Right-align the first L steps: output column j holds step j - (100 - L).
    step_idx = np.arange(SEQ_LEN)[None, :] - (SEQ_LEN - lengths)[:, None]
    padded = np.take_along_axis(steps, np.maximum(step_idx, 0), axis=1)
    return np.where(step_idx >= 0, padded, -1)


def first_distinct(candidates: np.ndarray, counts: np.ndarray):
    """Keep the first `counts[u]` distinct values per row; returns (values, n_kept)."""
    width = candidates.shape[1]
    earlier = np.tril(np.ones((width, width), dtype=bool), k=-1)
    dup = ((candidates[:, :, None] == candidates[:, None, :]) & earlier).any(axis=2)
    order = np.argsort(dup, axis=1, kind="stable")  # distinct values first, in order
    values = np.take_along_axis(candidates, order, axis=1)
    n_kept = np.minimum(counts, (~dup).sum(axis=1))
    return values[:, : int(counts.max())], n_kept


def draw_targets(task: TargetTask, targets: ClusteredCatalog, item_link, sequences,
                 primary, secondary, rng):
    """Per user: [users, max_count] target indices and how many are valid."""
    n_users, n_clusters = len(primary), len(targets.offsets) - 1
    shape = (n_users, CANDIDATES_PER_USER)
    recent_pos = SEQ_LEN - 1 - rng.integers(0, RECENT_WINDOW, size=shape)
    recent = item_link[np.take_along_axis(sequences, recent_pos, axis=1)]
    p, s = np.repeat(primary[:, None], shape[1], 1), np.repeat(secondary[:, None], shape[1], 1)
    interest = targets.sample(interest_clusters(p, s, rng), rng)
    noise = targets.sample(rng.integers(0, n_clusters, size=shape), rng)
    source = rng.random(shape)
    candidates = np.where(source < task.recent_prob, recent,
                          np.where(source < task.recent_prob + task.interest_prob,
                                   interest, noise))
    counts = 1 + rng.choice(len(task.count_probs), size=n_users, p=task.count_probs)
    return first_distinct(candidates, counts)


def deal_peaks(cluster_share: np.ndarray, label_shares, rng) -> np.ndarray:
    """One peak label per cluster so user shares of peaks track `label_shares`.

    Greedy over clusters in random order: give each the label whose user share
    lags its target most after adding this cluster.
    """
    target = np.asarray(label_shares, dtype=float)
    assigned = np.zeros(len(target))
    peaks = np.empty(len(cluster_share), dtype=np.int64)
    for c in rng.permutation(len(cluster_share)):
        total = assigned.sum() + cluster_share[c]
        peaks[c] = int(np.argmax(target * total - assigned))
        assigned[peaks[c]] += cluster_share[c]
    return peaks


def draw_labels(task: LabelTask, primary, n_clusters, rng) -> np.ndarray:
    """Class index per user from its primary cluster's label distribution."""
    base = np.asarray(task.base)
    peaks = deal_peaks(cluster_popularity(n_clusters), task.peak_shares, rng)
    table = (1 - task.peak_mass) * base + task.peak_mass * np.eye(len(base))[peaks]
    cdf = np.cumsum(table, axis=1)[primary]
    return np.minimum((rng.random(len(primary))[:, None] >= cdf).sum(axis=1), len(base) - 1)


@dataclass
class SyntheticData:
    """Everything the files are made of, plus the latent truth (for tests)."""
    tokens: np.ndarray  # [users, 100] item tokens, 0 = padding
    primary: np.ndarray  # latent primary cluster per user
    secondary: np.ndarray
    n_clusters: int
    clicks: tuple  # (users kept mask, [users, max] target tokens, counts)
    likes: tuple
    labels: dict  # "T4".."T6" -> (users kept mask, label token per user)


def generate_synthetic(users: int, items: int, seed: int) -> SyntheticData:
    if users < 1 or items < 4:
        raise ValueError("need users >= 1 and items >= 4")
    rng = np.random.default_rng(seed)
    n_clusters = int(np.clip(items // ITEMS_PER_CLUSTER_MIN, 2, MAX_CLUSTERS))
    item_cat = ClusteredCatalog(items, n_clusters, rng)
    n_succ = min(len(SUCCESSOR_PROBS), items // n_clusters - 1)
    successors = successor_table(item_cat, n_succ, rng)
    primary, secondary, lengths = draw_users(users, n_clusters, rng)
    sequences = draw_sequences(item_cat, successors, primary, secondary, lengths, rng)
    item_tokens = rng.permutation(items) + 1
    tokens = np.where(sequences >= 0, item_tokens[np.maximum(sequences, 0)], 0)

    def target_task(task: TargetTask, n_targets: int):
        cat = ClusteredCatalog(n_targets, n_clusters, rng)
        # Every item's linked target: a popularity draw from its own cluster's targets.
        item_link = cat.sample(item_cat.cluster_of, rng)
        chosen, counts = draw_targets(task, cat, item_link, sequences, primary, secondary, rng)
        keep = rng.random(users) < task.keep_user_prob
        return keep, (rng.permutation(n_targets) + 1)[chosen], counts

    clicks = target_task(CLICKS, max(items // 2, 4 * n_clusters))
    likes = target_task(LIKES, max(items // 5, 3 * n_clusters))
    has_profile = rng.random(users) < PROFILE_KEEP_PROB
    labels = {name: (has_profile, 1 + draw_labels(task, primary, n_clusters, rng))
              for name, task in (("T4", GENDER), ("T5", AGE), ("T6", LIFESTATUS))}
    return SyntheticData(tokens, primary, secondary, n_clusters, clicks, likes, labels)



def task_lines(data: SyntheticData) -> dict:
    """Task name -> encoded file content."""
    files = {"T1": encode_lines(data.tokens)}
    for name, (keep, targets, counts) in (("T2", data.clicks), ("T3", data.likes)):
        files[name] = encode_lines(data.tokens[keep], targets[keep], counts[keep])
    for name, (keep, label) in data.labels.items():
        files[name] = encode_lines(data.tokens[keep], label[keep][:, None],
                                   np.ones(int(keep.sum()), dtype=np.int64))
    return files


def summarise(data: SyntheticData) -> list:
    """Short human-readable lines about the generated data."""
    tok = data.tokens
    out = [f"T1: {len(tok)} users, {len(np.unique(tok[tok > 0]))} distinct items, "
           f"{(tok > 0).sum(1).mean():.1f} mean items, {(tok[:, 0] > 0).mean():.0%} unpadded, "
           f"{data.n_clusters} latent clusters"]
    for name, (keep, targets, counts) in (("T2", data.clicks), ("T3", data.likes)):
        valid = np.arange(targets.shape[1])[None, :] < counts[:, None]
        kept = targets[keep][valid[keep]]
        out.append(f"{name}: {keep.sum()} users, {len(kept)} targets, "
                   f"{len(np.unique(kept))} distinct")
    for name, (keep, label) in data.labels.items():
        shares = np.bincount(label[keep])[1:] / keep.sum()
        out.append(f"{name}: {keep.sum()} users, label shares "
                   + " ".join(f"{i + 1}:{s:.2f}" for i, s in enumerate(shares)))
    return out


def write_synthetic(out_dir, users: int = 5000, items: int = 2000, seed: int = 0) -> list:
    """Generate and write the six task files; returns summary lines."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate_synthetic(users, items, seed)
    for name, content in task_lines(data).items():
        write_atomically(out_dir / FILES[name], content)
    return summarise(data)

