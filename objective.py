"""What a stage trains on and how its updates are shaped, by method: the task's loss and its method's
terms, what each batch carries beyond the data, the update scales and side rules of the optimizer step.

A method's rule (methods.py) names a function `objective(run) -> Objective`, `run` being the stage's
StageRun (its model, task number, config, data, teacher and stage name). `plain` serves Conure and the
baselines; hat.objective and teracon.objective add their methods' terms to it.
"""
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import gates

RETENTION_DRAWS = 7  # TERACON's per-batch draws: (seed, stage stream, epoch, step, this), apart from the data's
DROPOUT_DRAWS = 8    # the task dropout's per-batch draws, the same way


class BatchExtras:
    """What a batch adds to its data, each drawn from the batch's own stream: for gated methods the
    annealed s and, for TERACON after T1, what its retention loss needs (teracon.Retention, whose
    ratios carry from batch to batch and are kept in the snapshots through `state`); with a task
    dropout, the mask of the task's representation, scaled by 1 / (1 - rate)."""

    def __init__(self, seed, stream, smax=None, retention=None, dropout=0.0, shape=None):
        self.seed, self.stream, self.smax, self.retention = seed, stream, smax, retention
        self.dropout, self.shape = dropout, shape

    @property
    def needed(self):
        return bool(self.smax or self.retention or self.dropout)

    def __call__(self, epoch, step, steps):
        found = {}
        if self.smax:
            found["s"] = np.asarray(gates.anneal(step, steps, self.smax), dtype=np.float32)
        if self.retention:
            rng = np.random.default_rng([self.seed, self.stream, epoch, step, RETENTION_DRAWS])
            found.update(self.retention(rng, found["s"]))
        if self.dropout:
            rng = np.random.default_rng([self.seed, self.stream, epoch, step, DROPOUT_DRAWS])
            found["dropout"] = ((rng.random(self.shape) >= self.dropout) / (1 - self.dropout)).astype(np.float32)
        return found

    def state(self):
        return self.retention.state() if self.retention else {}

    def load(self, state):
        if self.retention:
            self.retention.load(state)


@dataclass
class Objective:
    """A stage's training loss (batch -> scalar) and what fit.train needs beside it (see trainer.TrainStep
    for `update_scales`, `side_rules` and `clip_norm`); `frozen`: variables outside the model the loss
    reads; `at_inference`: what a batch carries when the loss is taken at inference (HAT's s at smax)."""
    loss: Callable
    extras: BatchExtras | None = None
    update_scales: dict = field(default_factory=dict)
    side_rules: dict | None = None
    clip_norm: float | None = None
    frozen: tuple = ()
    at_inference: dict = field(default_factory=dict)


def stream(run):
    """The stage's own stream of draws (data order, negatives, extras)."""
    return zlib.crc32(run.name.encode())


def task_loss(run):
    """The task's training loss, on the stage's training view of the conv kernels."""
    model, number, view = run.model, run.number, run.rule.train_view
    return lambda batch: model.task_loss(batch, number, view)


def batch_extras(run, retention=None):
    """BatchExtras of the stage (the gates' s where its rule has gates), or None where a batch needs none."""
    config = run.config
    size = min(config["batch_size"], run.data.n_train)
    extras = BatchExtras(config["seed"], stream(run), config["smax"] if run.rule.gates else None, retention,
                         config["task_dropout"], (size, run.model.backbone.channels))
    return extras if extras.needed else None


def shared_scales(run):
    """{id(variable): shared_lr_scale} for everything the stage trains but the task's head."""
    scale = run.config["shared_lr_scale"]
    if scale == 1.0:
        return {}
    head = {id(v) for v in run.model.head(run.number).trainable_variables}
    return {id(v): np.float32(scale) for v in run.model.trainable_variables if id(v) not in head}


def plain(run):
    """Conure's and the baselines' objective: the task's loss, with the extension's task dropout and
    shared learning-rate scale where they are set."""
    return Objective(task_loss(run), batch_extras(run), shared_scales(run))
