"""Conure's training losses (docs/design.md section 4), in keras.ops. Big matmuls run in the hidden
states' dtype (bfloat16 under mixed precision); logits and losses are reduced in float32.

Batch layouts (dicts of arrays, built by data_loader):
  T1:  tokens [B, T], labels [B, T] (next token), weights [B, T] (1 = counted position);
       sampled softmax adds sampled [S] (unique candidate ids) and num_tries [] (draws it took).
  T2+: tokens [B, T+1] (source + separator), target [B]; BPR / logistic add negative [B].
"""
import math

from keras import ops

# Logit given to sampled candidates that equal the true label ("accidental hits").
ACCIDENTAL_HIT_LOGIT = -1e9
# How the sampled softmax sums over the true and the sampled logits: "concat" (the release's, one
# matrix with the true logit as its first column) or "split" (the sampled logits' sum plus the true
# logit's term; the same function, other float roundings, fewer passes over the logits' memory).
SAMPLED_SUMS = ("concat", "split")


def log_uniform_log_expected_count(ids, num_tries, n_classes):
    """log E[count of id] for TF's unique log-uniform sampler after `num_tries` draws.

    P(id) = (log(id + 2) - log(id + 1)) / log(n_classes + 1); E = 1 - (1 - P) ** num_tries.
    """
    ids = ops.cast(ids, "float32")
    prob = (ops.log(ids + 2.0) - ops.log(ids + 1.0)) / math.log(n_classes + 1.0)
    return ops.log(-ops.expm1(ops.cast(num_tries, "float32") * ops.log1p(-prob)))


def weighted_mean(values, weights):
    weights = ops.cast(weights, "float32")
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1.0)


def softmax_cross_entropy(logits, labels):
    """Per-row -log softmax(logits)[label], in float32."""
    logits = ops.cast(logits, "float32")
    true_logit = ops.take_along_axis(logits, ops.expand_dims(labels, -1), axis=-1)[..., 0]
    return ops.logsumexp(logits, axis=-1) - true_logit


def pad_to_chunks(weight, bias, chunk):
    """weight and bias padded to a whole number of chunks (padding never wins a softmax)."""
    n_items = weight.shape[0]
    n_chunks = -(-n_items // chunk)
    pad = n_chunks * chunk - n_items
    weight = ops.pad(weight, [[0, pad], [0, 0]])
    bias = ops.pad(bias, [[0, pad]], constant_values=ACCIDENTAL_HIT_LOGIT)
    return weight, bias, n_chunks


def chunked_logsumexp(hidden, weight, bias, chunk):
    """log sum_j exp(hidden @ weight[j] + bias[j]) per row, over item chunks with an online
    log-sum-exp; the gradient recomputes each chunk, so memory is O(rows x chunk) both ways."""
    n_items, channels = weight.shape

    @ops.custom_gradient
    def logsumexp(hidden, weight, bias):
        padded_weight, padded_bias, n_chunks = pad_to_chunks(weight, bias, chunk)

        def chunk_logits(i):
            w = ops.slice(padded_weight, [i * chunk, 0], [chunk, channels])
            return ops.matmul(hidden, ops.transpose(w)) + ops.slice(padded_bias, [i * chunk], [chunk]), w

        def accumulate(i, carry):
            running_max, running_sum = carry
            logits, _ = chunk_logits(i)
            new_max = ops.maximum(running_max, ops.max(logits, axis=1))
            running_sum = running_sum * ops.exp(running_max - new_max) + ops.sum(
                ops.exp(logits - ops.expand_dims(new_max, 1)), axis=1)
            return new_max, running_sum

        start = (ops.full((hidden.shape[0],), -float("inf")), ops.zeros((hidden.shape[0],)))
        running_max, running_sum = ops.fori_loop(0, n_chunks, accumulate, start)
        result = running_max + ops.log(running_sum)

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream

            def backward(i, carry):
                d_hidden, d_weight, d_bias = carry
                logits, w = chunk_logits(i)
                probs = ops.exp(logits - ops.expand_dims(result, 1)) * ops.expand_dims(upstream, 1)
                d_hidden = d_hidden + ops.matmul(probs, w)
                d_weight = ops.slice_update(d_weight, [i * chunk, 0], ops.matmul(ops.transpose(probs), hidden))
                d_bias = ops.slice_update(d_bias, [i * chunk], ops.sum(probs, axis=0))
                return d_hidden, d_weight, d_bias

            zeros = (ops.zeros_like(hidden), ops.zeros_like(padded_weight), ops.zeros_like(padded_bias))
            d_hidden, d_weight, d_bias = ops.fori_loop(0, n_chunks, backward, zeros)
            return d_hidden, d_weight[:n_items], d_bias[:n_items]

        return result, grad

    return logsumexp(ops.cast(hidden, "float32"), ops.cast(weight, "float32"), ops.cast(bias, "float32"))


def full_softmax(hidden, labels, weight, bias, chunk=0):
    """Per-row cross-entropy of the softmax over every row of `weight`; item-chunked when the
    table is larger than `chunk` (> 0), else one plain logit matrix."""
    if chunk and weight.shape[0] > chunk:
        hidden = ops.cast(hidden, "float32")
        true_logit = ops.sum(hidden * ops.take(weight, labels, axis=0), axis=-1) + ops.take(bias, labels)
        return chunked_logsumexp(hidden, weight, bias, chunk) - true_logit
    logits = ops.matmul(hidden, ops.transpose(ops.cast(weight, hidden.dtype)))
    return softmax_cross_entropy(ops.cast(logits, "float32") + bias, labels)


def sampled_softmax(hidden, labels, weight, bias, sampled, num_tries, sums="concat"):
    """Per-position sampled softmax loss as tf.nn.sampled_softmax_loss computes it.

    hidden [N, C], labels [N], weight [V, C], bias [V], sampled [S] unique ids shared by all
    positions. Accidental hits are removed and log expected counts subtracted (logQ correction).
    `sums`: one of SAMPLED_SUMS.
    """
    n_classes = weight.shape[0]
    true_logit = ops.sum(ops.cast(hidden, "float32") * ops.take(weight, labels, axis=0), axis=-1)
    true_logit = true_logit + ops.take(bias, labels) - log_uniform_log_expected_count(labels, num_tries, n_classes)
    sampled_weight = ops.cast(ops.take(weight, sampled, axis=0), hidden.dtype)  # bf16 matmul under mixed precision
    sampled_logits = ops.cast(ops.matmul(hidden, ops.transpose(sampled_weight)), "float32")
    sampled_logits = sampled_logits + ops.take(bias, sampled)
    sampled_logits = sampled_logits - log_uniform_log_expected_count(sampled, num_tries, n_classes)
    hits = ops.expand_dims(labels, 1) == ops.expand_dims(sampled, 0)
    sampled_logits = ops.where(hits, ACCIDENTAL_HIT_LOGIT, sampled_logits)
    if sums == "split":
        return logsumexp_with(true_logit, sampled_logits) - true_logit
    logits = ops.concatenate([ops.expand_dims(true_logit, 1), sampled_logits], axis=1)
    return ops.logsumexp(logits, axis=1) - true_logit


def logsumexp_with(first, rest):
    """logsumexp over the columns of [first[:, None], rest] without building that matrix, so the
    compiler can fuse `rest`'s elementwise producers into each of its two passes."""
    top = ops.stop_gradient(ops.maximum(first, ops.max(rest, axis=1)))
    total = ops.exp(first - top) + ops.sum(ops.exp(rest - ops.expand_dims(top, 1)), axis=1)
    return top + ops.log(total)


def next_item_loss(hidden, batch, weight, bias, chunk=0, sampled_sums="concat"):
    """T1: sampled softmax if the batch carries candidates (`sampled_sums`: SAMPLED_SUMS), else the
    full softmax."""
    hidden = ops.reshape(hidden, (-1, hidden.shape[-1]))
    labels = ops.reshape(batch["labels"], (-1,))
    if "sampled" in batch:
        per_position = sampled_softmax(hidden, labels, weight, bias, batch["sampled"], batch["num_tries"],
                                       sampled_sums)
    else:
        per_position = full_softmax(hidden, labels, weight, bias, chunk)
    return weighted_mean(per_position, ops.reshape(batch["weights"], (-1,)))


def bpr(pos_score, neg_score):
    """-mean(log sigmoid(s_pos - s_neg))."""
    return -ops.mean(ops.log_sigmoid(pos_score - neg_score))


def logistic(pos_score, neg_score):
    """-mean(log sigmoid(s_pos) + log(1 - sigmoid(s_neg)))."""
    return -ops.mean(ops.log_sigmoid(pos_score) + ops.log_sigmoid(-neg_score))


PAIRWISE = {"item": bpr, "class": logistic}


def target_loss(user, batch, table, kind, chunk=0, bias=None):
    """T2+: BPR (item tasks) or logistic (classification) on one negative, else full softmax.
    `bias`: a per-target bias added to every score (None: none)."""
    if "negative" not in batch:
        bias = ops.zeros((table.shape[0],)) if bias is None else bias
        return ops.mean(full_softmax(user, batch["target"], table, bias, chunk))
    user = ops.cast(user, "float32")
    pos, neg = (ops.sum(user * ops.take(table, batch[key], axis=0), axis=-1) for key in ("target", "negative"))
    if bias is not None:
        pos, neg = pos + ops.take(bias, batch["target"]), neg + ops.take(bias, batch["negative"])
    return PAIRWISE[kind](pos, neg)
