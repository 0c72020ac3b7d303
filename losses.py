"""Conure's training losses (SPEC section 4), in keras.ops, reduced in float32.

Batch layouts (dicts of arrays, built by data_loader):
  T1:  tokens [B, T], labels [B, T] (next token), weights [B, T] (1 = counted position);
       sampled softmax adds sampled [S] (unique candidate ids) and num_tries [] (draws it took).
  T2+: tokens [B, T+1] (source + separator), target [B]; BPR / logistic add negative [B].
"""
import math

from keras import ops

# Logit given to sampled candidates that equal the true label ("accidental hits").
ACCIDENTAL_HIT_LOGIT = -1e9


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


def sampled_softmax(hidden, labels, weight, bias, sampled, num_tries):
    """Per-position sampled softmax loss as tf.nn.sampled_softmax_loss computes it.

    hidden [N, C], labels [N], weight [V, C], bias [V], sampled [S] unique ids shared by all
    positions. Accidental hits are removed and log expected counts subtracted (logQ correction).
    """
    n_classes = weight.shape[0]
    hidden = ops.cast(hidden, "float32")
    true_logit = ops.sum(hidden * ops.take(weight, labels, axis=0), axis=-1) + ops.take(bias, labels)
    true_logit = true_logit - log_uniform_log_expected_count(labels, num_tries, n_classes)
    sampled_logits = ops.matmul(hidden, ops.transpose(ops.take(weight, sampled, axis=0)))
    sampled_logits = sampled_logits + ops.take(bias, sampled)
    sampled_logits = sampled_logits - log_uniform_log_expected_count(sampled, num_tries, n_classes)
    hits = ops.expand_dims(labels, 1) == ops.expand_dims(sampled, 0)
    sampled_logits = ops.where(hits, ACCIDENTAL_HIT_LOGIT, sampled_logits)
    logits = ops.concatenate([ops.expand_dims(true_logit, 1), sampled_logits], axis=1)
    return ops.logsumexp(logits, axis=1) - true_logit


def next_item_loss(hidden, batch, weight, bias):
    """T1: sampled softmax if the batch carries candidates, else the full softmax."""
    hidden = ops.reshape(hidden, (-1, hidden.shape[-1]))
    labels = ops.reshape(batch["labels"], (-1,))
    if "sampled" in batch:
        per_position = sampled_softmax(hidden, labels, weight, bias, batch["sampled"], batch["num_tries"])
    else:
        logits = ops.matmul(ops.cast(hidden, "float32"), ops.transpose(weight)) + bias
        per_position = softmax_cross_entropy(logits, labels)
    return weighted_mean(per_position, ops.reshape(batch["weights"], (-1,)))


def bpr(pos_score, neg_score):
    """-mean(log sigmoid(s_pos - s_neg))."""
    return -ops.mean(ops.log_sigmoid(pos_score - neg_score))


def logistic(pos_score, neg_score):
    """-mean(log sigmoid(s_pos) + log(1 - sigmoid(s_neg)))."""
    return -ops.mean(ops.log_sigmoid(pos_score) + ops.log_sigmoid(-neg_score))


PAIRWISE = {"item": bpr, "class": logistic}


def target_loss(user, batch, table, kind):
    """T2+: BPR (item tasks) or logistic (classification) on one negative, else full softmax."""
    user = ops.cast(user, "float32")
    if "negative" not in batch:
        return ops.mean(softmax_cross_entropy(ops.matmul(user, ops.transpose(table)), batch["target"]))
    pos = ops.sum(user * ops.take(table, batch["target"], axis=0), axis=-1)
    neg = ops.sum(user * ops.take(table, batch["negative"], axis=0), axis=-1)
    return PAIRWISE[kind](pos, neg)
