"""Plain numpy references of the model, independent of nextitnet.py, for tests to check against."""
import json

import numpy as np


def causal_conv(x, kernel, dilation):
    """y[t] = sum_j x[t - (k-1-j)*d] @ kernel[j], zero before the sequence starts."""
    k = kernel.shape[0]
    y = np.zeros(x.shape[:2] + (kernel.shape[2],), dtype=np.float64)
    for t in range(x.shape[1]):
        for j in range(k):
            src = t - (k - 1 - j) * dilation
            if src >= 0:
                y[:, t] += x[:, src] @ kernel[j]
    return y


def layer_norm(x, gamma, beta, epsilon=1e-8):
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + epsilon) * gamma + beta


def checkpoint_scores(directory, tokens, task):
    """Task `task`'s scores at the last position, from a Conure checkpoint folder's files alone:
    the item embedding (its entries owned by tasks 1..task where it is shared, plus the task's item
    delta where it has one), pre-LN residual blocks (convs with dilation d and 2d) that see the conv
    weights owned by tasks 1..task, then the task's head."""
    config = json.loads((directory / "config.json").read_text())
    with np.load(directory / "weights.npz") as saved, np.load(directory / "ownership.npz") as owners:
        w = {name: saved[name].astype(np.float64) for name in saved.files}
        owned = {name: (owners[name] > 0) & (owners[name] <= task) for name in owners.files}
    embedding = w["backbone/embedding/embeddings"] * owned.get("backbone/embedding", 1)  # where it is shared
    x = embedding[tokens]
    if f"delta_t{task}/rows" in w:  # the task's low-rank addition to the embedding
        x = x + w[f"delta_t{task}/rows"][tokens] @ w[f"delta_t{task}/basis"]
    for i, d in enumerate(config["dilations"]):
        block = f"backbone/block_{i}"
        h = x
        for conv, norm, dilation in (("conv1", "norm1", d), ("conv2", "norm2", 2 * d)):
            h = np.maximum(layer_norm(h, w[f"{block}/{norm}/gamma"], w[f"{block}/{norm}/beta"]), 0)
            h = causal_conv(h, w[f"{block}/{conv}/kernel"] * owned[f"{block}/{conv}"], dilation)
        x = x + h
    user = x[:, -1]
    if task == 1:
        return user @ w["head_t1/weight"].T + w["head_t1/bias"]
    return user @ w[f"head_t{task}/table"].T
