"""HAT (Serra et al., ICML 2018) on the NextItNet backbone: what a stage adds to the task loss and
to the optimizer update (docs/hat.md).

After tasks 1..K-1, the cumulative gate of conv l's output channel c is the largest of their
gates at smax. Task K's update of a conv weight is scaled by 1 - that cumulative gate, so the
weights earlier tasks use are (nearly) frozen; the regulariser keeps task K's gates off the
channels still free. Every input of a conv passes through a LayerNorm, which mixes channels, so
only the output channel's gate is used (HAT's rule for a network's first layer).
"""
import numpy as np
from keras import ops


def cumulative_gates(model, task, smax):
    """The largest gate of tasks 1..task-1 at smax, per conv and channel ([convs, C]); None for T1."""
    earlier = [ops.convert_to_numpy(model.task_gates(number, smax)) for number in range(1, task)]
    return np.max(earlier, axis=0) if earlier else None


def regulariser(model, task, s, cumulative):
    """sum(a * (1 - cumulative)) / sum(1 - cumulative) over every gated channel, with `task`'s gates
    a at `s`; for T1 (no cumulative gates) the mean gate."""
    a = model.task_gates(task, s)
    if cumulative is None:
        return ops.mean(a)
    free = ops.convert_to_tensor(1.0 - cumulative, dtype=a.dtype)
    return ops.sum(a * free) / ops.maximum(ops.sum(free), 1e-12)


def update_scales(model, cumulative):
    """{id(kernel variable): 1 - cumulative gate of its output channels, shaped [1, 1, C]}: the
    factor on every optimizer update of the conv kernels (trainer.TrainStep)."""
    if cumulative is None:
        return {}
    return {id(conv.kernel): (1.0 - cumulative[l]).astype(np.float32)[None, None, :]
            for l, conv in enumerate(model.backbone.convs)}
