"""The training loop of a stage: a fresh Adam, epochs over the training split, snapshots for
resuming, and, with a validation slice, model selection and early stopping.

With `valid` > 0 the model is evaluated on the validation slice every `eval_every` epochs and
after the last one; the trained variables' values at the best score of the selection metric
(MRR@5 for item tasks, accuracy for classification) are kept and restored at the end, and
`patience` evaluations without improvement stop the stage early (0: train up to `epochs`). Only
the variables the stage trains are restored, so everything frozen stays bit-identical. With
`valid` = 0 the release's fixed schedule runs, printing held-out metrics every `eval_every`
epochs as the release did.
"""
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import checkpoint
import data_loader
import trainer
import keras  # noqa: E402  (after trainer, which quiets TensorFlow's logging)


def selection_metric(kind):
    return "accuracy" if kind == "class" else "MRR@5"


def format_metrics(result):
    return "  ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))


def floats(result):
    return {k: v for k, v in result.items() if isinstance(v, float)}


class Selection:
    """The best validation score so far (the highest; the lowest if `lower`, for a loss) and the
    values of the trained variables at it."""

    def __init__(self, variables, metric, patience, lower=False):
        self.variables, self.metric, self.patience, self.lower = list(variables), metric, patience, lower
        self.epoch, self.value, self.waited, self.values = 0, None, 0, None

    def update(self, epoch, result):
        """Record the evaluation after `epoch`; True if it is the best so far (ties keep the earlier)."""
        score = -result[self.metric] if self.lower else result[self.metric]
        if self.value is not None and score <= (-self.value if self.lower else self.value):
            self.waited += 1
            return False
        self.epoch, self.value, self.waited = epoch, result[self.metric], 0
        self.values = [keras.ops.convert_to_numpy(v).copy() for v in self.variables]
        return True

    @property
    def stop(self):
        return self.patience > 0 and self.waited >= self.patience

    def restore(self):
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)

    def state(self):
        return {"epoch": self.epoch, "value": self.value, "waited": self.waited}

    def load(self, state, values):
        self.epoch, self.value, self.waited = state["epoch"], state["value"], state["waited"]
        self.values = values


class Plateau:
    """The learning rate's decay on a plateau, as HAT's released code schedules it: after `patience`
    evaluations without a better selection score the rate is divided by `factor`, and the stage
    stops once it would fall below `minimum` (patience 0: a constant rate)."""

    def __init__(self, optimizer, rate, patience, factor, minimum):
        self.optimizer, self.rate, self.patience, self.factor, self.minimum = optimizer, rate, patience, factor, minimum
        self.left, self.stop = patience, False

    def update(self, improved):
        """After an evaluation; returns the text for the epoch's log line."""
        if not self.patience:
            return ""
        self.left = self.patience if improved else self.left - 1
        if self.left > 0:
            return ""
        if self.rate / self.factor < self.minimum:
            self.stop = True
            return f"  lr {self.rate / self.factor:.1e} < {self.minimum:g}: stop"
        self.rate /= self.factor
        self.optimizer.learning_rate = self.rate
        self.left = self.patience
        return f"  lr {self.rate:.1e}"

    def state(self):
        return {"rate": self.rate, "left": self.left, "stop": self.stop}

    def load(self, state):
        self.rate, self.left, self.stop = state["rate"], state["left"], state["stop"]
        self.optimizer.learning_rate = self.rate


def validation_loss(loss_fn, batches, variables, extras):
    """A function that returns the mean over the examples of `batches` of `loss_fn`, each batch
    with `extras` added (HAT's s at smax): the training loss, at inference, on the validation slice."""
    compiled = trainer.compiled(loss_fn, variables)

    def mean_loss():
        total = count = 0.0
        for batch in batches:
            size = len(batch["tokens"])
            total += float(compiled({**batch, **extras})) * size
            count += size
        return total / max(count, 1.0)
    return mean_loss


class Snapshots:
    """Periodic snapshots of a running stage (every variable, the optimizer, the position in the
    data, the best weights so far), so a stage killed at any point continues where it was when
    started again with the same command. Data order and negatives are functions of (seed,
    stream, epoch, step): the position is enough."""

    def __init__(self, directory, fingerprint):
        self.directory, self.fingerprint = Path(directory), fingerprint

    def restore(self, variables, optimizer, selection, log):
        """The saved position, after loading the saved state into variables, optimizer and
        selection; None if there is no snapshot of this very run."""
        try:
            manifest = checkpoint.read_manifest(self.directory, "the stage")
        except checkpoint.CheckpointError:
            return None
        if manifest.get("fingerprint") != self.fingerprint:
            log(f"{self.directory}: snapshot of another command or data; starting from the beginning")
            return None
        checkpoint.load_weights(self.directory / "variables.npz", variables)
        with np.load(self.directory / "optimizer.npz") as saved:
            for i, variable in enumerate(optimizer.variables):
                variable.assign(saved[f"{i:05d}"])
        position = manifest["position"]
        if (self.directory / "best.npz").exists():
            with np.load(self.directory / "best.npz") as saved:
                selection.load(position["selection"], [saved[v.path] for v in selection.variables])
        log(f"resuming from epoch {position['epoch'] + 1}, step {position['step']}")
        return position

    def save(self, variables, optimizer, selection, position):
        if not trainer.is_chief():  # multi-worker: worker 0 writes; resuming needs out_dir shared by all
            return

        def write_files(directory):
            checkpoint.save_weights(directory / "variables.npz", variables)
            np.savez(directory / "optimizer.npz",
                     **{f"{i:05d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)})
            if selection.values is not None:
                np.savez(directory / "best.npz", **{v.path: x for v, x in zip(selection.variables, selection.values)})

        position = {**position, "selection": selection.state()}
        checkpoint.write(self.directory, write_files, {"fingerprint": self.fingerprint, "position": position})

    def clear(self):
        shutil.rmtree(self.directory, ignore_errors=True)


class Scalars:
    """TensorBoard scalars laid out as Keras's TensorBoard callback writes them: <dir>/train and
    <dir>/validation, tags epoch_loss and epoch_<metric>, step = 0-based epoch. No-op without a
    directory. Uses tensorboard's own writer, so it needs no TensorFlow (JAX runs write them too)."""

    def __init__(self, directory):
        self.writers = {}
        if directory:
            from tensorboard.summary import Writer

            self.writers = {part: Writer(str(Path(directory) / part)) for part in ("train", "validation")}

    def add(self, part, values, epoch):
        if self.writers:
            for tag, value in values.items():
                self.writers[part].add_scalar(f"epoch_{tag}", float(value), step=epoch)
            self.writers[part].flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()


def score_epoch(epoch, config, evaluate, validating, selection, curve, evals, scalars, plateau, valid_loss=None):
    """After `epoch`: the validation score when due (with `valid_loss()`, the loss on the slice, if
    given; kept in `curve`, `selection` and `plateau`), else the held-out one when due (kept in
    `evals`). Returns the text for the epoch's log line."""
    due = config["eval_every"] and epoch % config["eval_every"] == 0
    if validating and (due or epoch == config["epochs"]):
        result = evaluate("valid")
        if valid_loss:
            result["loss"] = valid_loss()
        curve.append({"epoch": epoch, **floats(result), "scores_sha256": result["scores_sha256"]})
        scalars.add("validation", floats(result), epoch - 1)
        best = selection.update(epoch, result)
        return "  valid " + format_metrics(result) + ("  (best)" if best else "") + plateau.update(best)
    if due and epoch < config["epochs"]:
        result = evaluate("test")
        evals.append({"epoch": epoch, **floats(result)})
        return "  held-out " + format_metrics(result)
    return ""


def train(model, loss_fn, data, config, evaluate, log, snapshots, stream=0, scalars_dir=None, extras=None,
          update_scales=None, frozen=(), side_rules=None, clip_norm=None, valid_loss=None):
    """Train `model.trainable_variables` on `loss_fn(batch)` over `data`'s training split (batch
    order and negatives from `stream`) with config's optimizer. `evaluate(part)` returns the metrics
    of the model on "valid" or "test"; `valid_loss()` the loss on the validation slice, needed with
    select_on="loss". `extras(epoch, step, steps)` adds entries to each batch (HAT's and TERACON's
    annealed s); where it carries state from batch to batch, its `state()` and `load(state)` keep it
    in the snapshots. `update_scales`, `side_rules` and `clip_norm`: see trainer.TrainStep; under
    SGD each batch carries the current "learning_rate" for the side rules. `frozen`: variables
    outside the model that the loss reads (TERACON's teacher). Returns the history: loss per epoch,
    held-out evaluations during training, the validation curve, the epoch chosen and the epochs
    trained."""
    optimizer = trainer.optimizer(config["optimizer"], config["learning_rate"])
    step = trainer.TrainStep(loss_fn, model.trainable_variables, [*model.variables, *frozen], optimizer,
                             xla=config["xla"] and not config["data_parallel"], table_update=config["table_update"],
                             update_scales=update_scales, side_rules=side_rules, clip_norm=clip_norm)
    validating = data.n_valid > 0
    by_loss = config["select_on"] == "loss"
    selection = Selection(step.variables, "loss" if by_loss else selection_metric(data.kind), config["patience"],
                          lower=by_loss)
    plateau = Plateau(optimizer, config["learning_rate"], config["lr_decay_patience"], config["lr_decay_factor"],
                      config["lr_min"])
    scalars = Scalars(scalars_dir)
    at = snapshots.restore(model.variables, step.optimizer, selection, log) or {
        "epoch": 0, "step": 0, "epoch_loss": 0.0, "history": [], "evals": [], "curve": []}
    stateful = hasattr(extras, "state")
    if stateful and "extras" in at:
        extras.load(at["extras"])
    if "plateau" in at:
        plateau.load(at["plateau"])
    rate_in_batch = side_rules and config["optimizer"] == "sgd"

    def batch_of(batch, epoch, i, steps):
        found = {**batch, **extras(epoch, i, steps)} if extras else batch
        return {**found, "learning_rate": np.float32(plateau.rate)} if rate_in_batch else found

    def position(epoch, step, epoch_loss):
        return {"epoch": epoch, "step": step, "epoch_loss": epoch_loss, "history": history, "evals": evals,
                "curve": curve, "plateau": plateau.state(), **({"extras": extras.state()} if stateful else {})}
    history, evals, curve = at["history"], at["evals"], at["curve"]
    epoch = at["epoch"]
    while epoch < config["epochs"] and not selection.stop and not plateau.stop:
        batches = data.train_batches(config, epoch, stream)
        first = at["step"] if epoch == at["epoch"] else 0
        total = at["epoch_loss"] if epoch == at["epoch"] else 0.0
        bar = keras.utils.Progbar(len(batches), verbose=int(bool(config["verbose"]) and sys.stdout.isatty()),
                                  unit_name="step")
        started = time.time()
        for i, batch in enumerate(data_loader.prefetched(batches.from_step(first)), start=first):
            loss = step(batch_of(batch, epoch, i, len(batches)))
            total += loss
            bar.update(i + 1, [("loss", loss)])
            if config["save_every"] and (i + 1) % config["save_every"] == 0 and i + 1 < len(batches):
                snapshots.save(model.variables, step.optimizer, selection, position(epoch, i + 1, total))
        epoch += 1
        history.append(total / max(len(batches), 1))
        scalars.add("train", {"loss": history[-1]}, epoch - 1)
        log(f"epoch {epoch}/{config['epochs']}  loss {history[-1]:.4f}  {time.time() - started:.1f}s"
            + score_epoch(epoch, config, evaluate, validating, selection, curve, evals, scalars, plateau,
                          valid_loss if by_loss else None))
        if epoch < config["epochs"] and not selection.stop and not plateau.stop:
            snapshots.save(model.variables, step.optimizer, selection, position(epoch, 0, 0.0))
    scalars.close()
    chosen = epoch
    if validating and selection.values is not None:
        selection.restore()
        chosen = selection.epoch
        log(f"{'stopped early after' if epoch < config['epochs'] else 'trained'} {epoch} epochs; restored epoch {chosen} "
            f"(valid {selection.metric} {selection.value:.4f})")
    return {"loss_history": history, "evals": evals, "valid_curve": curve, "best_epoch": chosen,
            "epochs_trained": epoch}
