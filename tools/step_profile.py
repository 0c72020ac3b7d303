"""The T1 training step, part by part: `python tools/bench.py --case=profile --scale=sample`.

Each part runs compiled on its own (XLA as the stage compiles it), forward and backward, on the
real model's variables at the scale's sizes: the embedding gather, the convolutions, the
LayerNorms with their ReLUs, the sampled softmax, Adam's update of every trainable variable (with
TensorFlow's dense table gradients), and making a batch on the host. Beside each: its matmul FLOPs,
its TFLOP/s and share of the peak, and the time it loses against its FLOPs run at the peak. The part
that loses most is what holds the step back.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from tools import peak as matmul_peak

ROUNDS = 3  # each part is timed this many times, interleaved with the others; the best counts


def t1_parts(model, batch, kernel_size=3):
    """{part: (loss_fn, variables, inputs, forward FLOPs)} of T1's step. `inputs` are the arrays
    each loss_fn reads from its batch besides the model's variables (the activations it starts
    from are variables, so their gradient is taken as in the step)."""
    import keras
    from keras import ops

    import losses

    backbone, head = model.backbone, model.head(1)
    rows, length = batch["tokens"].shape
    channels = backbone.channels
    rng = np.random.default_rng(0)
    upstream = rng.standard_normal((rows, length, channels)).astype("float32")
    start = keras.Variable(rng.standard_normal((rows, length, channels)).astype("float32"), name="activations")
    hidden = keras.Variable(rng.standard_normal((rows * length, channels)).astype("float32"), name="hidden")
    norms = [n for block in backbone.blocks for n in (block.norm1, block.norm2)]

    def chained(layers, relu=False):
        def loss(inputs):
            x = start
            for layer in layers:
                x = ops.relu(layer(x)) if relu else layer(x)
            return ops.sum(x * inputs["upstream"])
        return loss

    def gather(inputs):
        return ops.sum(backbone.embedding(inputs["tokens"]) * inputs["upstream"])

    def softmax(inputs):
        return losses.next_item_loss(hidden, inputs, head.weight, head.bias, model.softmax_chunk, model.sampled_sums)

    conv_flops = 2 * kernel_size * channels * channels * rows * length * len(backbone.convs)
    softmax_flops = 2 * rows * length * len(batch.get("sampled", ())) * channels
    head_batch = {k: batch[k] for k in ("labels", "weights", "sampled", "num_tries") if k in batch}
    return {
        "embedding gather": (gather, [backbone.embedding.embeddings], {"tokens": batch["tokens"], "upstream": upstream}, 0),
        "convolutions": (chained(backbone.convs), [start, *(c.kernel for c in backbone.convs)],
                         {"upstream": upstream}, conv_flops),
        "LayerNorms and ReLUs": (chained(norms, relu=True), [start, *(w for n in norms for w in n.trainable_weights)],
                                 {"upstream": upstream}, 0),
        "sampled softmax": (softmax, [hidden, head.weight, head.bias], head_batch, softmax_flops),
    }


def part_timer(loss_fn, variables, model_variables, inputs, xla):
    """A function that runs the compiled gradients of loss_fn once and waits for them."""
    import settings
    import trainer

    rate = settings.DEFAULTS["learning_rate"]
    step = trainer.TrainStep(loss_fn, variables, [*variables, *model_variables], trainer.adam(rate), xla=xla)
    gradients, _ = step.split()
    return lambda: gradients(inputs)


def profile(model, step, data, config, xla, peak, rounds=ROUNDS):
    """(rows of the profile table, the peak they are set against): each part's best time over
    `rounds` interleaved rounds, the whole step's and the parts' sum, against the best of `peak`'s
    winning matmul timed once a round. `step` is the stage's trainer.TrainStep of T1 on `model`."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # one trace per part is expected
    batches = iter(data.train_batches(config, epoch=0))
    batch = next(batches)
    gradients, apply = step.split()
    grads = gradients(batch)
    timers = {name: part_timer(loss_fn, variables, model.variables, inputs, xla)
              for name, (loss_fn, variables, inputs, _) in t1_parts(model, batch).items()}
    timers["Adam (every trainable variable)"] = lambda: apply(grads)
    timers["data (one batch on the host)"] = lambda: next(batches)
    timers["whole step"] = lambda: step(batch)
    flops = {name: part[3] for name, part in t1_parts(model, batch).items()}
    best = {name: float("inf") for name in timers}
    for timer in timers.values():
        timer()  # compile and warm up
    probe, probed = matmul_peak.Probe.of(peak, "float32"), 0.0
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], _timed(timer))
        probed = max(probed, probe())
    same_minutes = matmul_peak.Peak(probed, peak.shape, peak.engine)
    return table(best, flops, same_minutes), same_minutes


def table(seconds, flops, peak):
    """Profile rows from {part: seconds} and {part: forward FLOPs}; the parts' sum before the step."""
    step_s = seconds["whole step"]
    parts = {name: s for name, s in seconds.items() if name != "whole step"}
    rows = [_row(name, s, 3 * flops.get(name, 0), step_s, peak) for name, s in parts.items()]
    rows.append(_row("sum of the parts", sum(parts.values()), 3 * sum(flops.values()), step_s, peak))
    rows.append(_row("whole step", step_s, 3 * sum(flops.values()), step_s, peak))
    return rows


def _row(name, seconds, flops, step_s, peak):
    tflops = flops / seconds / 1e12
    at_peak = flops / peak.tflops / 1e12
    return {"part": name, "ms": f"{seconds * 1e3:,.0f}", "of step": f"{seconds / step_s:.0%}",
            "TFLOP/s": f"{tflops:.3f}" if flops else "-",
            "of peak": matmul_peak.share_of_peak(tflops, peak) if flops else "-",
            "lost ms": f"{(seconds - at_peak) * 1e3:,.0f}"}


def holding_back(rows):
    """The part (not the sum, not the step) that loses the most time against the peak."""
    parts = [r for r in rows if r["part"] not in ("sum of the parts", "whole step")]
    return max(parts, key=lambda r: float(r["lost ms"].replace(",", "")))["part"]


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
