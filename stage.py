"""Stage runner: what every `conure_<tp|ret>_t<k>.py` script does after its hyperparameter block.

A Conure stage is "tp_tK" (train task K on the free weights, then prune: task K takes its share)
or "ret_tK" (retrain task K's own weights only). tp_t1 starts from scratch; every other stage starts
from the checkpoint of the stage before it: tp_tK from ret_t(K-1), ret_tK from tp_tK.

The baselines of docs/design.md section 9 are stages too, named <method>_tK (see RULES): sinmo_tK trains a
fresh model on task K alone; sinmoall_tK fine-tunes everything, starting from sinmoall_t(K-1)
(sinmo_t1 for K = 2); finall_tK, finesmax_tK and peterrec_tK start from sinmo_t1. Conure's
successors HAT and TERACON (hat_tK, teracon_tK) gate the conv outputs per task and start from
their own stage of task K-1 (docs/hat.md, docs/teracon.md).

    python stage.py tp_t7 --epochs=5      # any stage, for tasks that have no script of their own
    python stage.py finall_t2 --epochs=45
"""
import ast
import hashlib
import json
import sys
import time
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import checkpoint
import data_loader
import fit
import gates
import hat
import metrics
import paths
import pruning
import teracon
import tasks
import trainer
import keras  # noqa: E402  (after trainer, which quiets TensorFlow's logging)
from nextitnet import POOLINGS, ConureModel, NextItemHead, TargetHead

# Every hyperparameter a stage knows, with its default; a script's block overrides these and
# --name=value overrides both. Defaults are the release's settings for T4 (docs/design.md section 5: T5 and
# T6 were not released and use T4's). None = inherited from the previous stage's checkpoint.
DEFAULTS = {
    "data_dir": "Data/Session",     # TTL files (docs/design.md section 2)
    "out_dir": "Data",              # checkpoints in <out_dir>/Models/<stage>/, metrics in <out_dir>/Results/
    "epochs": 30,                   # the cap when a validation slice stops the stage early
    "valid": 0.0,                   # share of the training split set aside for model selection (0: the release's
                                    # fixed schedule); the best epoch on it is kept, the held-out split is untouched
    "patience": 0,                  # with valid: stop after this many evaluations without improvement (0: never)
    "valid_positions": 1,           # T1: score each validation user's last this many items (held-out: the last)
    "batch_size": 512,
    "learning_rate": 1e-4,
    "optimizer": "adam",            # a fresh "adam" per stage (the release's) or plain "sgd" (HAT's release)
    "lr_decay_patience": 0,         # with valid: after this many evaluations without a better selection score,
                                    # divide the learning rate by lr_decay_factor; below lr_min the stage stops
                                    # (0: a constant rate; HAT's release: 5)
    "lr_decay_factor": 3.0,
    "lr_min": 1e-4,
    "select_on": "metric",          # with valid: keep the epoch of the best validation "metric" (MRR@5 or
                                    # accuracy) or of the lowest validation "loss" (the task's training loss,
                                    # HAT's regulariser included, at inference; HAT's release)
    "seed": 0,                      # weight init, data order, negative sampling
    "prune_ratio": 0.7,             # tp stages: share of the free weights left free for later tasks
    "num_sampled_ratio": 0.2,       # T1 sampled softmax: negatives per step as a share of the vocabulary
    "full_softmax": False,          # exact softmax over every target instead of sampled / pairwise losses
    "exclude_padding": False,       # T1: padding targets do not count in the loss (the release counts them)
    "token_dropout": 0.0,           # each item of a training input becomes padding with this probability
                                    # (a regulariser; the release has none); evaluation inputs are never touched
    "l2": None,                     # L2 penalty on the task's target table, for T1 its output weights (TF1
                                    # l2_regularizer scale); None: the task's value in tasks.py (ret: its tp's)
    "rho": 0.3,                     # LambdaFM popularity sampler for item tasks
    "bottleneck": 16,               # PeterRec: width of each model patch
    "freeze_embedding": False,      # the item embedding stays as the stage's start has it (a probe: FineAll with
                                    # T1's embedding, as Conure keeps it)
    # Beyond the release (docs/extension.md): Conure's item embedding, and what a later task's head reads.
    "embedding_prune_ratio": 0.3,   # embedding="owned": share of the embedding's free entries a tp stage leaves free
    "delta_rank": 8,                # embedding="delta": rank of each later task's addition to the item embedding
    "pooling": "last",              # T2+: the head reads the last position ("last", the release), or every
                                    # non-padding position: "mean" or "attention"
    "task_dropout": 0.0,            # T2+: dropout on the task's representation before its head, in training
    "shared_lr_scale": 1.0,         # T2+: the updates of everything but the task's head, scaled by this
    "smax": None,                   # HAT, TERACON: the gates' s at inference, the top of its annealing (None:
                                    # the method's, METHOD_DEFAULTS)
    "hat_c": None,                  # HAT: weight of the regulariser that keeps a task's gates off used channels
    "alpha": None,                  # TERACON: weight of the knowledge-retention loss
    "retention_items": None,        # TERACON: T1's retention loss over a uniform sample of this many items when T1
                                    # has more (0: every item)
    "eval_every": 1,                # epochs between evaluations, on the validation slice if valid > 0, else on
                                    # the held-out split (0: only at the end)
    "eval_cap": 0,                  # evaluate on at most this many held-out examples (0: all)
    "eval_batch_size": 256,
    "eval_chunk": 65536,            # rank on the device over item chunks when a task has more targets
    "softmax_chunk": 65536,         # full softmax over item chunks (online log-sum-exp) above this many
    "precision": "float32",         # or "mixed_bfloat16" (losses are still reduced in float32)
    "data_parallel": False,         # split each batch over every device (tf.distribute / keras.distribution)
    "xla": True,                    # TensorFlow: compile the training step with XLA (JAX always does)
    "table_update": "dense",        # TensorFlow: Adam on embedding-table rows, "dense", "sparse" or "lazy" (trainer.py)
    "verbose": 1,                   # 0: quiet, 1: progress bar and per-epoch lines
    "tensorboard_dir": "",          # write TensorBoard scalars to <tensorboard_dir>/<stage>/ ("": none)
    "save_every": 1000,             # steps between snapshots for resuming (0: only after each epoch)
    # Chain settings: fixed at tp_t1, inherited by every later stage.
    "channels": None,
    "dilations": None,
    "kernel_size": None,
    "split_seed": None,             # seeded 80/20 split (release: numpy seed 10)
    "holdout": None,                # held-out share
    "train_share": None,            # train on this nested random share of the training users (1: all); held-out
                                    # and validation users are the same at every share (data_loader.user_keys)
    "min_item_count": None,         # k > 0: T1 items seen fewer than k times in the training users become <unk>,
                                    # then training users left with fewer than k items are dropped (k-core)
    "embedding": None,              # Conure's item embedding: "frozen" after T1 (the release), "owned" (shared
                                    # among tasks by owner maps, like the kernels) or "delta" (each later task adds
                                    # a low-rank table of its own); docs/extension.md
}
CHAIN_DEFAULTS = {"channels": 256, "dilations": [1, 4, 1, 4, 1, 4, 1, 4], "kernel_size": 3,
                  "split_seed": 10, "holdout": 0.2, "train_share": 1.0, "min_item_count": 0, "embedding": "frozen"}
EMBEDDINGS = ("frozen", "owned", "delta")
# Settings added after runs were recorded, with the value that trains as before they existed: at
# that value they stay out of run fingerprints, so older snapshots still resume.
ADDED_LATER = {"token_dropout": 0.0, "valid_positions": 1, "smax": None, "hat_c": None, "alpha": None,
               "retention_items": None, "train_share": 1.0, "min_item_count": 0, "freeze_embedding": False,
               "embedding": "frozen", "embedding_prune_ratio": 0.3, "delta_rank": 8, "pooling": "last",
               "task_dropout": 0.0, "shared_lr_scale": 1.0, "optimizer": "adam", "lr_decay_patience": 0,
               "lr_decay_factor": 3.0, "lr_min": 1e-4, "select_on": "metric"}
OPTIMIZERS = ("adam", "sgd")
SELECT_ON = ("metric", "loss")
# Settings of Conure's successors, with the released codes' values (docs/hat.md, docs/teracon.md).
METHOD_DEFAULTS = {"hat": {"smax": 400.0, "hat_c": 0.75},
                   "teracon": {"smax": 50.0, "alpha": 0.7, "retention_items": 65536}}
RETENTION_DRAWS = 7  # TERACON's per-batch draws: (seed, stage stream, epoch, step, this), apart from the data's
DROPOUT_DRAWS = 8    # the task dropout's per-batch draws, the same way
SCRIPT_TYPES = (bool, int, float, str, list)
PRECISIONS = ("float32", "mixed_bfloat16")


class ConfigError(ValueError):
    """Bad stage name or hyperparameter."""


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Rule:
    """How a kind of stage trains task K. Views are the conv-kernel views of nextitnet.py."""
    train_view: str
    eval_view: str
    shared: bool        # embedding and LayerNorms train
    convs: bool         # conv kernels train (through the view)
    patches: bool = False
    prune: bool = False
    first_task: int = 1
    shared_t1: bool = False  # embedding and LayerNorms train in T1's stage only (Conure, HAT)
    gates: str = ""          # task gates on the conv outputs: "hat" or "teracon"
    every_task: bool = False  # every task's head and gate trains too (TERACON)
    linear_heads: bool = False  # heads with a bias, every task trained with a full softmax (TERACON)


RULES = {
    "tp": Rule("train", "infer", shared=False, convs=True, prune=True, shared_t1=True),
    "ret": Rule("retrain", "infer", shared=False, convs=True),
    "sinmo": Rule("full", "full", shared=True, convs=True),
    "sinmoall": Rule("full", "full", shared=True, convs=True, first_task=2),
    "finall": Rule("full", "full", shared=True, convs=True, first_task=2),
    "finesmax": Rule("full", "full", shared=False, convs=False, first_task=2),
    "peterrec": Rule("full", "full", shared=False, convs=False, patches=True, first_task=2),
    "hat": Rule("full", "full", shared=False, convs=True, shared_t1=True, gates="hat"),
    "teracon": Rule("full", "full", shared=True, convs=True, gates="teracon", every_task=True, linear_heads=True),
}


def parse_stage(name):
    """'tp_t3' -> ('tp', 3)."""
    phase, _, number = name.partition("_t")
    if phase not in RULES or not number.isdigit():
        raise ConfigError(f"stage {name!r}: expected <kind>_tK with kind one of {', '.join(RULES)}")
    number = int(number)
    try:
        tasks.task(number)
    except KeyError as e:
        raise ConfigError(f"stage {name!r}: {e.args[0]}")
    if number < RULES[phase].first_task:
        raise ConfigError(f"stage {name!r}: {phase} starts at T{RULES[phase].first_task} (its T1 is sinmo_t1)")
    return phase, number


def previous_stage(name):
    """The stage whose checkpoint `name` starts from, or None for a fresh model."""
    phase, number = parse_stage(name)
    if phase == "tp":
        return f"ret_t{number - 1}" if number > 1 else None
    if phase == "ret":
        return f"tp_t{number}"
    if phase == "sinmoall" and number > 2:
        return f"sinmoall_t{number - 1}"
    if RULES[phase].gates:
        return f"{phase}_t{number - 1}" if number > 1 else None
    return None if phase == "sinmo" else "sinmo_t1"


def script_for(name):
    phase, number = parse_stage(name)
    script = f"conure_{phase}_t{number}.py"
    return script if Path(__file__).with_name(script).exists() else f"stage.py {name}"


def hyperparameters(script_globals):
    """The hyperparameter block of a stage script: its public variables of plain types."""
    return {k: v for k, v in script_globals.items() if not k.startswith("_") and isinstance(v, SCRIPT_TYPES)}


def parse_value(name, text, default):
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if isinstance(default, bool) and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if default is None or isinstance(default, list):
            return text
        raise ConfigError(f"--{name}={text}: not a valid {type(default).__name__}")
    if isinstance(default, list) and isinstance(value, (int, tuple)):
        value = list(value) if isinstance(value, tuple) else [value]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ConfigError(f"--{name}={text}: expected a {type(default).__name__}")
    return value


def parse_overrides(argv, known):
    """['--epochs=3', ...] -> {'epochs': 3}; unknown names are an error."""
    overrides = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"{arg!r}: overrides are written --name=value")
        name, text = arg[2:].split("=", 1)
        if name not in known:
            raise ConfigError(f"--{name}: unknown hyperparameter (known: {', '.join(sorted(known))})")
        overrides[name] = parse_value(name, text, known[name] if known[name] is not None else CHAIN_DEFAULTS.get(name))
    return overrides


def validate(config):
    """Reject bad values; chain settings still None (inherited later) are checked once resolved."""
    def need(ok, message):
        if not ok:
            raise ConfigError(message)

    need(config["precision"] in PRECISIONS, f"precision={config['precision']!r}: one of {', '.join(PRECISIONS)}")
    need(config["table_update"] in trainer.TABLE_UPDATES,
         f"table_update={config['table_update']!r}: one of {', '.join(trainer.TABLE_UPDATES)}")
    need(config["table_update"] == "dense" or trainer.backend() == "tensorflow" and not config["data_parallel"],
         f"table_update={config['table_update']!r}: TensorFlow on one device only (JAX gradients are dense)")
    for key in ("epochs", "eval_every", "eval_cap", "save_every", "eval_chunk", "softmax_chunk", "patience"):
        need(isinstance(config[key], int) and config[key] >= 0, f"{key}={config[key]!r}: must be an integer >= 0")
    for key in ("batch_size", "eval_batch_size", "channels", "kernel_size", "valid_positions"):
        need(config[key] is None or isinstance(config[key], int) and config[key] > 0,
             f"{key}={config[key]!r}: must be an integer > 0")
    need(config["eval_batch_size"] % EVAL_BLOCK == 0,
         f"eval_batch_size={config['eval_batch_size']}: must be a multiple of {EVAL_BLOCK} (rows are scored in blocks)")
    need(config["learning_rate"] > 0, f"learning_rate={config['learning_rate']!r}: must be > 0")
    validate_schedule(config, need)
    need(0 < config["prune_ratio"] < 1, f"prune_ratio={config['prune_ratio']!r}: must lie in (0, 1)")
    need(0 < config["num_sampled_ratio"] <= 1, f"num_sampled_ratio={config['num_sampled_ratio']!r}: must lie in (0, 1]")
    need(config["holdout"] is None or 0 < config["holdout"] < 1, f"holdout={config['holdout']!r}: must lie in (0, 1)")
    need(config["train_share"] is None or 0 < config["train_share"] <= 1,
         f"train_share={config['train_share']!r}: must lie in (0, 1]")
    for key in ("min_item_count", "retention_items"):
        need(config[key] is None or isinstance(config[key], int) and config[key] >= 0,
             f"{key}={config[key]!r}: must be an integer >= 0")
    need(config["l2"] is None or config["l2"] >= 0, f"l2={config['l2']!r}: must be >= 0")
    need(0 <= config["token_dropout"] < 1, f"token_dropout={config['token_dropout']!r}: must lie in [0, 1)")
    need(0 <= config["valid"] < 1, f"valid={config['valid']!r}: must lie in [0, 1)")
    need(not config["patience"] or config["valid"], "patience needs a validation slice: set valid > 0")
    need(config["rho"] > 0, f"rho={config['rho']!r}: must be > 0")
    need(config["smax"] is None or config["smax"] > 0, f"smax={config['smax']!r}: must be > 0")
    for key in ("hat_c", "alpha"):
        need(config[key] is None or config[key] >= 0, f"{key}={config[key]!r}: must be >= 0")
    dilations = config["dilations"]
    need(dilations is None or isinstance(dilations, list) and dilations and all(
        isinstance(d, int) and d > 0 for d in dilations), f"dilations={dilations!r}: must be a non-empty list of "
         "positive integers")
    validate_extension(config, need)


def validate_schedule(config, need):
    """The optimizer, the learning rate's decay on a plateau and what the validation slice selects on."""
    need(config["optimizer"] in OPTIMIZERS, f"optimizer={config['optimizer']!r}: one of {', '.join(OPTIMIZERS)}")
    need(config["optimizer"] == "adam" or config["table_update"] == "dense",
         f"table_update={config['table_update']!r}: Adam's row updates, not {config['optimizer']}'s")
    need(config["select_on"] in SELECT_ON, f"select_on={config['select_on']!r}: one of {', '.join(SELECT_ON)}")
    need(isinstance(config["lr_decay_patience"], int) and config["lr_decay_patience"] >= 0,
         f"lr_decay_patience={config['lr_decay_patience']!r}: must be an integer >= 0")
    need(config["lr_decay_factor"] > 1, f"lr_decay_factor={config['lr_decay_factor']!r}: must be > 1")
    need(config["lr_min"] > 0, f"lr_min={config['lr_min']!r}: must be > 0")
    for key, off in (("lr_decay_patience", 0), ("select_on", "metric")):
        need(config[key] == off or config["valid"], f"{key}={config[key]!r} needs a validation slice: set valid > 0")


def validate_extension(config, need):
    """The settings beyond the release (docs/extension.md)."""
    need(config["embedding"] in (None, *EMBEDDINGS),
         f"embedding={config['embedding']!r}: one of {', '.join(EMBEDDINGS)}")
    need(0 < config["embedding_prune_ratio"] < 1,
         f"embedding_prune_ratio={config['embedding_prune_ratio']!r}: must lie in (0, 1)")
    need(isinstance(config["delta_rank"], int) and config["delta_rank"] > 0,
         f"delta_rank={config['delta_rank']!r}: must be an integer > 0")
    need(config["pooling"] in POOLINGS, f"pooling={config['pooling']!r}: one of {', '.join(POOLINGS)}")
    need(0 <= config["task_dropout"] < 1, f"task_dropout={config['task_dropout']!r}: must lie in [0, 1)")
    need(config["shared_lr_scale"] > 0, f"shared_lr_scale={config['shared_lr_scale']!r}: must be > 0")


def check_receptive_field(config, seq_len):
    """The widest conv (second conv of the largest dilation) must see more than padding."""
    reach = (config["kernel_size"] - 1) * 2 * max(config["dilations"])
    if config["kernel_size"] < 2 or reach >= seq_len:
        raise ConfigError(
            f"dilations={config['dilations']} with kernel_size={config['kernel_size']}: the widest conv looks "
            f"{reach} steps back, which must be at least 1 and below the sequence length {seq_len}")


def check_config(stage_name, config):
    """Everything about a stage's settings and paths that can be checked before its start is read."""
    validate(config)
    phase, number = parse_stage(stage_name)
    if number > 1 and config["valid_positions"] != 1:
        raise ConfigError(f"valid_positions={config['valid_positions']}: T1 only (a T{number} example has one target)")
    for method, settings in METHOD_DEFAULTS.items():
        for key in settings:
            if config[key] is not None and key not in METHOD_DEFAULTS.get(phase, {}):
                raise ConfigError(f"{key}={config[key]!r}: a setting of {method} stages, not of {stage_name}")
    if RULES[phase].gates and config["data_parallel"]:
        raise ConfigError(f"data_parallel=True: {phase} stages run on one device")
    if RULES[phase].every_task and config["select_on"] == "loss":
        raise ConfigError(f"select_on=loss: not for {phase} stages (their retention loss needs a training batch's "
                          "samples)")
    check_extension_scope(phase, number, config)
    check_paths(config, stage_name)


def check_extension_scope(phase, number, config):
    """Where the settings beyond the release apply: Conure's stages only (another method's
    protection of earlier tasks, HAT's scaled updates say, is not made for them), and a head's
    pooling, dropout and shared learning-rate scale to later tasks only."""
    if config["embedding"] not in (None, "frozen") and phase not in ("tp", "ret"):
        raise ConfigError(f"embedding={config['embedding']}: Conure's stages (tp, ret) only, not {phase}")
    for key in ("pooling", "task_dropout", "shared_lr_scale"):
        if phase not in ("tp", "ret") and config[key] != DEFAULTS[key]:
            raise ConfigError(f"{key}={config[key]!r}: a setting of Conure's stages (tp, ret), not of "
                              f"{phase}_t{number}")
        if number == 1 and config[key] != DEFAULTS[key]:
            raise ConfigError(f"{key}={config[key]!r}: a setting of T2 and later tasks, not of T1")


def check_paths(config, stage_name):
    """Before any work: the data folder exists, and this stage's outputs can be written and replace
    only an earlier run's checkpoint, results file and TensorBoard folder."""
    paths.input_dir(config["data_dir"], "data_dir")
    out_dir = paths.output_dir(config["out_dir"], "out_dir")
    paths.replaceable(out_dir / "Models" / stage_name, "out_dir", "a checkpoint", paths.manifest_folder("tasks"))
    paths.replaceable(out_dir / "Results" / f"{stage_name}.json", "out_dir", "a results file", Path.is_file)
    if config["tensorboard_dir"]:
        paths.output_dir(Path(config["tensorboard_dir"]) / stage_name, "tensorboard_dir")


def make_config(stage_name, block, argv):
    """DEFAULTS < script block < command line. Returns (config, names given on the command line)."""
    parse_stage(stage_name)
    known = {**DEFAULTS, **block}
    overrides = parse_overrides(argv, known)
    return {**known, **overrides}, set(overrides)


def resolve_chain(config, explicit, previous):
    """Fill chain settings from the previous checkpoint; a value that disagrees with it is an error."""
    config = dict(config)
    for key, default in CHAIN_DEFAULTS.items():
        inherited = previous["config"][key] if previous else default
        if config[key] is not None and previous and config[key] != inherited:
            source = f"--{key}" if key in explicit else "the hyperparameter block"
            raise ConfigError(
                f"{key}={config[key]!r} (from {source}) but checkpoint {previous['stage']} was made with "
                f"{key}={inherited!r}: run {script_for('tp_t1')} with it first, or drop it")
        config[key] = inherited if config[key] is None else config[key]
    return config


# ----------------------------------------------------------------------------- data

def task_file(config, number):
    return Path(config["data_dir"]) / tasks.task(number).file


def load_task_data(number, config, vocab=None, t1_data=None):
    """Split data of task `number`; T1 builds the vocabulary (from `t1_data`, T1's file already
    read, if given), later tasks encode with `vocab`."""
    path, valid = task_file(config, number), config.get("valid", 0.0)
    share = config.get("train_share") or 1.0
    if number == 1:
        return data_loader.T1Task(data_loader.read_t1(path) if t1_data is None else t1_data, config["split_seed"], config["holdout"], path,
                                  valid, config.get("valid_positions", 1), config.get("min_item_count") or 0, share)
    return data_loader.TransferTask(data_loader.read_transfer(path, vocab), tasks.task(number).kind,
                                    config["split_seed"], config["holdout"], path, valid, share)


def fingerprints(config, number):
    """SHA-256 of the T1 file and of task `number`'s file: the data a checkpoint belongs to."""
    for path in (task_file(config, 1), task_file(config, number)):
        if not path.is_file():
            raise data_loader.DataError(path, "file not found")
    return {"t1_sha256": checkpoint.file_sha256(task_file(config, 1)),
            "task_sha256": checkpoint.file_sha256(task_file(config, number))}


# ----------------------------------------------------------------------------- model

def new_head(number, n_targets, l2, bias=False, pooling="last"):
    """T1's softmax head (which has a bias), or a later task's TargetHead, with a bias if `bias`,
    reading what `pooling` says."""
    if number == 1:
        return NextItemHead(n_targets, l2, name="head_t1")
    return TargetHead(n_targets, tasks.task(number).kind, l2, bias=bias, pooling=pooling, name=f"head_t{number}")


def add_task(model, entry):
    """Head (and PeterRec patches, HAT's or TERACON's gate) of a chain entry, freshly initialised."""
    head = new_head(entry["task"], entry["n_targets"], entry["l2"], entry.get("head_bias", False),
                    entry.get("pooling", "last"))
    model.add_head(entry["task"], head)
    if entry.get("delta"):
        model.add_delta(entry["task"], entry["delta"])
    if entry.get("patches"):
        model.add_patches(entry["task"], entry["patches"])
    if entry.get("gates"):
        model.add_gate(entry["task"], entry["gates"])


def build_model(vocab_size, config, chain=(), precision=None):
    """A freshly initialised (seeded) model with the heads, patches and gates of `chain`'s entries
    (and TERACON's relation gates once it holds two tasks). Variables are float32 under either
    precision; "mixed_bfloat16" computes in bfloat16."""
    keras.config.set_dtype_policy(precision or config["precision"])
    keras.utils.set_random_seed(config["seed"])
    model = ConureModel(vocab_size, config["channels"], config["dilations"], config["kernel_size"],
                        shared_embedding=config.get("embedding") == "owned", name="conure")
    for entry in chain:
        add_task(model, entry)
    model.smax = config.get("smax")
    if len(chain) > 1 and chain[-1].get("gates") == "teracon":
        model.add_relation()
    return model


def restore(directory, run_first, precision=None):
    """Model, manifest, T1 vocabulary, target vocabularies and prune ratios of a checkpoint; the
    model computes in `precision` (default: the checkpoint's)."""
    directory = Path(directory)
    manifest = checkpoint.read_manifest(directory, run_first)
    manifest["config"] = {**ADDED_LATER, **manifest["config"]}  # saved before those settings existed
    vocab = data_loader.Vocab.load(directory / "vocab.json")
    chain = manifest["tasks"]
    targets = {e["task"]: data_loader.TargetVocab.load(directory / f"targets_t{e['task']}.json")
               for e in chain if e["task"] > 1}
    model = build_model(vocab.size, manifest["config"], chain, precision)
    checkpoint.load_weights(directory / "weights.npz", weight_variables(model))
    owners, prune_ratios = pruning.load(directory)
    set_owners(model, owners)
    return model, manifest, vocab, targets, prune_ratios


def chain_entry(manifest, number):
    for entry in manifest["tasks"]:
        if entry["task"] == number:
            return entry
    raise checkpoint.CheckpointError(f"checkpoint {manifest['stage']} holds no T{number}")


def owned_layers(model):
    """{name: (weights, owner map variable)} of everything shared by ownership: every conv kernel,
    and the item embedding once it is shared (docs/extension.md)."""
    found = {conv.path: (conv.kernel, conv.owner) for conv in model.backbone.convs}
    if model.backbone.embedding_owner is not None:
        found[model.backbone.embedding.path] = (model.backbone.embedding.embeddings, model.backbone.embedding_owner)
    return found


def owners_of(model):
    return {name: keras.ops.convert_to_numpy(owner) for name, (_, owner) in owned_layers(model).items()}


def set_owners(model, owners):
    for name, (_, owner) in owned_layers(model).items():
        if name not in owners:
            raise checkpoint.CheckpointError(f"ownership has no map for {name}")
        owner.assign(owners[name])


def weight_variables(model):
    """Everything a checkpoint stores in weights.npz (owner maps are stored by pruning.save)."""
    owners = {id(owner) for _, owner in owned_layers(model).values()}
    return [v for v in model.variables if id(v) not in owners]


def stored_parameters(model, number, phase):
    """Parameters task `number` adds to what must be stored, under the stage's method: Conure
    stores one backbone for all tasks (T1 counts the embedding and LayerNorms, each task its own
    conv weights, head and item delta; a shared embedding counts per task as the kernels do); SinMo
    and FineAll a whole model per task; SinMoAll one model in all (its later tasks add a head);
    FineSmax a head; PeterRec its patches and head; HAT and TERACON one model, each task its head
    and gate (TERACON's relation gates too)."""
    size = lambda variables: int(sum(np.prod(v.shape) for v in variables))  # noqa: E731
    owned = {id(v) for pair in owned_layers(model).values() for v in pair}  # the shared embedding, the owner maps
    shared = size(v for layer in model.backbone.shared_layers for v in layer.weights if id(v) not in owned)
    convs = size(conv.kernel for conv in model.backbone.convs)
    head = size(model.head(number).weights)
    gate = size([model.gates[str(number)].embedding]) if str(number) in model.gates else 0
    if phase in ("tp", "ret"):
        own = sum(int(np.count_nonzero(o == number)) for o in owners_of(model).values())
        delta = size(model.deltas[str(number)].weights) if str(number) in model.deltas else 0
        return own + head + delta + (shared if number == 1 else 0)
    if phase in ("sinmo", "finall") or number == 1:
        return shared + convs + head + gate
    if phase == "peterrec":
        return size(v for patch in model.patches[str(number)] for v in patch.weights) + head
    if phase == "teracon":  # the relation gates of N tasks hold 2 N^2 values per conv: this task's growth
        return head + gate + 2 * (2 * number - 1) * len(model.backbone.convs)
    return head + gate  # sinmoall (one shared model), finesmax, hat


# ----------------------------------------------------------------------------- train / evaluate

_compiled = weakref.WeakKeyDictionary()
EVAL_BLOCK = 64  # rows per compiled block of evaluation (see `blocked`)


def compiled_method(model, key, fn):
    """trainer.compiled(fn) for `model`, traced once per model and key."""
    cache = _compiled.setdefault(model, {})
    if key not in cache:
        cache[key] = trainer.compiled(fn, model.variables)
    return cache[key]


def blocked(fn):
    """`fn` mapped over blocks of EVAL_BLOCK rows. Matmul kernels pick their summation order by
    shape, so a row's scores could depend on how many rows share its batch; in fixed blocks every
    row is computed with the same shapes, and eval_batch_size (a multiple of the block) is only
    a memory and speed setting."""
    def run(*arrays):
        blocks = tuple(keras.ops.reshape(a, (-1, EVAL_BLOCK, *a.shape[1:])) for a in arrays)
        out = keras.ops.map(lambda block: fn(*block), blocks)
        return keras.tree.map_structure(lambda o: keras.ops.reshape(o, (-1, *o.shape[2:])), out)
    return run


def eval_settings(config, item_chunked):
    """Everything that changes the evaluated floats: score hashes compare only under equal settings."""
    return {"eval_block": EVAL_BLOCK, "eval_batch_size": config["eval_batch_size"],
            "eval_mode": "item-chunked ranks" if item_chunked else "score matrix",
            "eval_chunk": config["eval_chunk"] if item_chunked else None,
            "precision": config["precision"], **trainer.numerics()}


def evaluate(model, number, data, config, phase="infer", part="test"):
    """Metrics of task `number` on the held-out examples (or the validation slice: part="valid"),
    capped if eval_cap, plus scores_sha256 and the settings it was computed under (`eval_settings`).

    Item tasks with more than `eval_chunk` targets are ranked on the device, item chunk by item
    chunk, without the score matrix; their scores_sha256 then covers the ranks, the top 5 and the
    true scores. Otherwise it is the SHA-256 of the whole held-out score matrix."""
    tokens, truth = data.inputs(part)
    n_part = len(truth)
    if config["eval_cap"]:
        tokens, truth = tokens[: config["eval_cap"]], truth[: config["eval_cap"]]
    chunk = config["eval_chunk"]
    item_chunked = data.kind != "class" and 0 < chunk < data.n_targets
    if item_chunked:
        excluded = data.excluded_targets
        run = compiled_method(model, ("ranks", number, phase, chunk), blocked(lambda t, y: model.task_ranks(
            t, y, number, phase, chunk, excluded)))
    else:
        run = compiled_method(model, ("scores", number, phase), blocked(lambda t: model.task_scores(t, number, phase)))
    hasher = metrics.ScoreHasher()
    ranks, class_scores = [], []
    size = config["eval_batch_size"]
    for start in range(0, len(tokens), size):
        rows, rows_truth = tokens[start:start + size], truth[start:start + size]
        if item_chunked:
            outputs = run(data_loader.pad_rows(rows, size), data_loader.pad_rows(rows_truth, size))
            batch_ranks, top, true_scores = (o[: len(rows)] for o in outputs)
            for part in (batch_ranks, top, true_scores):
                hasher.update(part)
            ranks.append(batch_ranks)
            continue
        scores = run(data_loader.pad_rows(rows, size))[: len(rows)]
        hasher.update(scores)
        if data.kind == "class":
            class_scores.append(scores)
        else:
            ranks.append(metrics.ranks_of(scores, rows_truth, data.excluded_targets))
    if data.kind == "class":
        result = metrics.classification_metrics(np.concatenate(class_scores), truth, seed=config["seed"])
    else:
        result = metrics.ranking_metrics(np.concatenate(ranks) if ranks else np.zeros(0))
    return {**result, "n_eval": int(len(truth)), "eval_capped": len(truth) < n_part,
            "scores_sha256": hasher.hexdigest(), "eval_settings": eval_settings(config, item_chunked)}


def run_fingerprint(stage_name, config, prints, previous):
    """What a snapshot must match to be resumed: stage, settings that change training, data, start.
    Paths are left out: the data are identified by their hashes, the start by its files' hashes."""
    cosmetic = {"verbose", "eval_cap", "eval_batch_size", "eval_chunk", "save_every", "tensorboard_dir", "data_dir",
                "out_dir"}
    settings = {k: v for k, v in config.items() if k not in cosmetic and not (k in ADDED_LATER and v == ADDED_LATER[k])}
    start = previous["files"] if previous else None
    return hashlib.sha256(json.dumps([stage_name, settings, prints, start], sort_keys=True).encode()).hexdigest()


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


def gate_statistics(model, method):
    """{"T<k>": gates.statistics} for every gated task of the model; HAT's adds each task's
    regulariser at smax, against the tasks before it."""
    found = {}
    for number in sorted(int(n) for n in model.gates):
        stats = gates.statistics(model, number)
        if method == "hat":
            cumulative = hat.cumulative_gates(model, number, model.smax)
            stats["regulariser"] = float(hat.regulariser(model, number, model.smax, cumulative))
        found[f"T{number}"] = stats
    return found


# ----------------------------------------------------------------------------- the stage

def finished_results(out_dir, stage_name, fingerprint):
    """Results (with timings) of a finished stage run with `fingerprint`, or None."""
    paths = [out_dir / "Models" / stage_name / "manifest.json"] + [
        out_dir / "Results" / f"{stage_name}{suffix}.json" for suffix in ("", ".timing")]
    if not all(p.exists() for p in paths) or checkpoint.read_json(paths[0]).get("fingerprint") != fingerprint:
        return None
    return {**checkpoint.read_json(paths[1]), **checkpoint.read_json(paths[2])}


def run_stage(stage_name, config, explicit=(), reuse=False):
    """Run one stage end to end; returns the results dict it also writes to Results/<stage>.json.
    With `reuse`, a stage already finished with the same fingerprint is not run again."""
    with trainer.data_parallel(config["data_parallel"]):
        if config["batch_size"] % trainer.device_count():
            raise ConfigError(f"batch_size={config['batch_size']} does not split evenly over "
                              f"{trainer.device_count()} devices")
        return _run_stage(stage_name, config, explicit, reuse)


def _run_stage(stage_name, config, explicit, reuse):
    started = time.time()
    trainer.make_deterministic()
    run = StageRun(stage_name, config)
    run.restore_start()
    run.settle_config(explicit)
    run.load_data()
    run.build_or_extend()
    if reuse and (done := finished_results(run.out_dir, stage_name, run.fingerprint)):
        run.log(f"{stage_name}: finished before with these settings and data; reusing its checkpoint and results")
        return done
    train_started = time.time()
    history = run.train()
    train_seconds = time.time() - train_started
    results = run.prune_and_evaluate()
    if not trainer.is_chief():  # multi-worker: worker 0 alone writes the checkpoint and results
        return results
    results = run.write(results, history)
    timing = {"train_seconds": round(train_seconds, 1), "wall_seconds": round(time.time() - started, 1)}
    checkpoint.write_json(timing, run.out_dir / "Results" / f"{stage_name}.timing.json")
    return {**results, **timing}


class StageRun:
    """One stage in named steps: restore its start, settle its config, load its data, build or
    extend the model, train, prune and evaluate, write the checkpoint and results."""

    def __init__(self, stage_name, config):
        self.name, (self.phase, self.number) = stage_name, parse_stage(stage_name)
        self.rule, self.task = RULES[self.phase], tasks.task(self.number)
        self.config, self.out_dir = config, Path(config["out_dir"])
        self.log = print if config["verbose"] else (lambda *a: None)
        check_config(stage_name, config)

    def restore_start(self):
        """The previous stage's checkpoint (model, manifest, vocabularies, prune ratios), or nothing."""
        self.previous_name = previous_stage(self.name)
        self.model, self.previous, self.vocab, self.targets, self.prune_ratios = None, None, None, {}, []
        self.teacher = None  # TERACON: the model after the previous stage, frozen
        self.own_ratios = {}  # prune ratios of the owner maps with their own (the shared item embedding)
        if self.previous_name:
            directory = self.out_dir / "Models" / self.previous_name
            self.model, self.previous, self.vocab, self.targets, self.prune_ratios = restore(
                directory, script_for(self.previous_name), self.config["precision"])
            self.own_ratios = pruning.load_own_ratios(directory)

    def settle_config(self, explicit):
        """Chain settings from the start, the task's L2, checked; the data's fingerprints against the start."""
        config = resolve_chain(self.config, set(explicit), self.previous)
        if config["l2"] is None:  # a retrain keeps its train phase's penalty, a new head takes the task's
            config["l2"] = chain_entry(self.previous, self.number)["l2"] if self.phase == "ret" else self.task.l2
        for key, value in METHOD_DEFAULTS.get(self.phase, {}).items():
            config[key] = value if config[key] is None else config[key]
        if self.rule.linear_heads:
            if "full_softmax" in explicit and not config["full_softmax"]:
                raise ConfigError(f"full_softmax=False: {self.phase} stages train every task with a full softmax")
            config["full_softmax"] = True
        if self.phase == "ret" and self.number > 1:  # a retrain keeps its train phase's head
            pooling = chain_entry(self.previous, self.number).get("pooling", "last")
            if "pooling" in explicit and config["pooling"] != pooling:
                raise ConfigError(f"pooling={config['pooling']}: {self.previous_name} made T{self.number}'s head "
                                  f"with pooling={pooling}")
            config["pooling"] = pooling
        validate(config)
        self.config, self.prints = config, fingerprints(config, self.number)
        if self.previous:
            check_previous(self.previous, self.name, self.number, self.prints)

    def load_data(self):
        """The task's split data, encoded with T1's vocabulary; a retrain's targets must be its start's."""
        config, number = self.config, self.number
        if self.vocab is None and number > 1:  # a fresh model for a later task (SinMo) still reads T1's vocabulary
            self.vocab = load_task_data(1, config).vocab
        data = self.data = load_task_data(number, config, self.vocab)
        self.vocab = self.vocab or data.vocab
        check_receptive_field(config, data.seq_len)
        if number > 1:
            self.log(f"{self.task.file}: {data.n_unknown} source tokens unknown to the T1 vocabulary "
                     "(mapped to <unk>)")
            if self.phase == "ret" and self.targets[number].tokens != data.targets.tokens:
                raise checkpoint.CheckpointError(
                    f"checkpoint {self.previous_name} has other T{number} targets than {task_file(config, number)}: "
                    f"run {script_for(self.previous_name)} first")
            self.targets[number] = data.targets
        self.log(f"stage {self.name}: task T{number} ({self.task.name}), {data.n_train:,} training / "
                 + (f"{data.n_valid:,} validation / " if data.n_valid else "")
                 + f"{data.n_test:,} held-out examples, {data.n_targets:,} targets, backend {trainer.backend()}")
        if config["data_parallel"]:
            self.log(trainer.parallel_summary())
        self.unseen_targets = int(np.count_nonzero(data.train_target_counts()[data.test_inputs()[1]] == 0))
        if self.unseen_targets:
            self.log(f"warning: {self.unseen_targets:,} held-out examples have a target that never occurs in training")

    def build_or_extend(self):
        """The model this stage trains and the task chain its checkpoint records: a new task's head on
        the start (or on a fresh model), or, for a retrain, the start with its head's L2 set."""
        config, number = self.config, self.number
        chain = list(self.previous["tasks"]) if self.previous else []
        if self.phase != "ret":
            chain.append({"task": number, "name": self.task.name, "kind": self.task.kind, "file": self.task.file,
                          "sha256": self.prints["task_sha256"], "n_targets": self.data.n_targets, "l2": config["l2"],
                          "prune_ratio": config["prune_ratio"] if self.rule.prune else None,
                          "patches": config["bottleneck"] if self.rule.patches else 0,
                          **({"gates": self.rule.gates} if self.rule.gates else {}),
                          **({"head_bias": True} if self.rule.linear_heads else {}),
                          **({"pooling": config["pooling"]} if config["pooling"] != "last" else {}),
                          **({"delta": config["delta_rank"]} if config["embedding"] == "delta" and number > 1 else {})})
            if self.previous and self.rule.every_task:  # TERACON: the start is kept as the teacher
                self.teacher, self.model = self.model, build_model(self.vocab.size, config, chain)
                checkpoint.load_matching_weights(self.out_dir / "Models" / self.previous_name / "weights.npz",
                                                 weight_variables(self.model))
                set_owners(self.model, owners_of(self.teacher))
            elif self.previous:
                keras.utils.set_random_seed(config["seed"])
                add_task(self.model, chain[-1])
            else:
                self.model = build_model(self.vocab.size, config, chain)
        else:  # the retrained head takes this stage's l2, and the checkpoint records it
            chain = [{**entry, "l2": config["l2"]} if entry["task"] == number else entry for entry in chain]
            self.model.head(number).l2 = config["l2"]
        self.model.softmax_chunk = config["softmax_chunk"]
        if self.rule.gates:
            self.model.smax = config["smax"]
        self.chain = chain
        self.fingerprint = run_fingerprint(self.name, config, self.prints, self.previous)

    def train(self):
        """fit.train on the variables the stage's rule trains; returns the training history."""
        model, number, rule, config = self.model, self.number, self.rule, self.config
        shared = rule.shared or (rule.shared_t1 and number == 1)
        owned = config["embedding"] == "owned"  # then trained in every Conure stage, through its owner map
        model.set_trainable(number, shared=shared, convs=rule.convs, patches=rule.patches, every_task=rule.every_task,
                            embedding=(shared or owned) and not config["freeze_embedding"])
        view_while_training = rule.train_view if rule.prune else rule.eval_view
        self.snapshots = fit.Snapshots(self.out_dir / "Models" / f".{self.name}.resume", self.fingerprint)
        cumulative = hat.cumulative_gates(model, number, config["smax"]) if rule.gates == "hat" else None
        gate_rules = hat.side_rules(model, number, config["smax"]) if rule.gates == "hat" else None
        loss_fn, stream = self.loss_fn(cumulative), zlib.crc32(self.name.encode())
        at_inference = {"s": np.float32(config["smax"])} if rule.gates else {}
        return fit.train(
            model, loss_fn, self.data, config,
            evaluate=lambda part: evaluate(model, number, self.data, config, view_while_training, part),
            log=self.log, snapshots=self.snapshots, stream=stream,
            scalars_dir=config["tensorboard_dir"] and Path(config["tensorboard_dir"]) / self.name,
            extras=self.batch_extras(), update_scales={**hat.update_scales(model, cumulative), **self.shared_scales()},
            frozen=self.teacher.variables if self.teacher else (), side_rules=gate_rules,
            clip_norm=hat.CLIP_NORM if gate_rules else None,
            valid_loss=fit.validation_loss(loss_fn, self.data.valid_batches(config, stream), model.variables,
                                           at_inference) if config["select_on"] == "loss" else None)

    def shared_scales(self):
        """{id(variable): shared_lr_scale} for everything the stage trains but the task's head."""
        scale = self.config["shared_lr_scale"]
        if scale == 1.0:
            return {}
        head = {id(v) for v in self.model.head(self.number).trainable_variables}
        return {id(v): np.float32(scale) for v in self.model.trainable_variables if id(v) not in head}

    def loss_fn(self, cumulative):
        """The training loss: the task's, plus HAT's regulariser (`cumulative`: the earlier tasks'
        gates) or, after T1, TERACON's knowledge-retention loss."""
        model, number, config, view = self.model, self.number, self.config, self.rule.train_view
        if self.rule.gates == "hat":
            return lambda batch: (model.task_loss(batch, number, view)
                                  + config["hat_c"] * hat.regulariser(model, number, batch["s"], cumulative))
        if self.teacher is not None:
            return lambda batch: (model.task_loss(batch, number, view)
                                  + config["alpha"] * teracon.retention(model, self.teacher, batch, number))
        return lambda batch: model.task_loss(batch, number, view)

    def batch_extras(self):
        """What each batch adds to its data beyond the data (BatchExtras), or None."""
        config, size = self.config, min(self.config["batch_size"], self.data.n_train)
        retention = self.teacher and teracon.Retention(self.model, self.teacher, self.number, size,
                                                       config["retention_items"])
        extras = BatchExtras(config["seed"], zlib.crc32(self.name.encode()), config["smax"] if self.rule.gates else None,
                             retention or None, config["task_dropout"], (size, self.model.backbone.channels))
        return extras if extras.needed else None

    def prune_and_evaluate(self):
        """A tp stage's pruning (the task takes its share of the free weights), then held-out metrics."""
        model, number, rule, config = self.model, self.number, self.rule, self.config
        results = {"stage": self.name, "task": number, "task_name": self.task.name, "kind": self.task.kind}
        if rule.prune:
            before = evaluate(model, number, self.data, config, rule.train_view)
            self.log("before pruning: " + fit.format_metrics(before))
            self.prune_ratios = self.prune_ratios + [config["prune_ratio"]]
            if config["embedding"] == "owned":
                name = model.backbone.embedding.path
                self.own_ratios = {name: self.own_ratios.get(name, []) + [config["embedding_prune_ratio"]]}
            weights = {name: keras.ops.convert_to_numpy(w) for name, (w, _) in owned_layers(model).items()}
            owners = {name: pruning.prune(weights[name], owner, number, self.own_ratios.get(name, self.prune_ratios))
                      for name, owner in owners_of(model).items()}
            pruning.check(owners, self.prune_ratios, self.own_ratios)
            set_owners(model, owners)
            self.log(pruning.report({n: o for n, o in owners.items() if n not in self.own_ratios}, self.prune_ratios))
            results["before_prune"] = before
        final = evaluate(model, number, self.data, config, rule.eval_view)
        self.log(f"{self.name} held-out ({final['n_eval']:,} examples{', capped' if final['eval_capped'] else ''}): "
                 + fit.format_metrics(final))
        if rule.gates:
            results["gates"] = gate_statistics(model, rule.gates)
            self.log("gates at smax: " + "; ".join(f"{k} open {g['open']:.1%}, sign changed {g['sign_changed']:.1%}"
                                                   for k, g in results["gates"].items()))
        return {**results, **final}

    def write(self, results, history):
        """The checkpoint folder and Results/<stage>.json (reproducible bit for bit); returns the results."""
        model, config, data = self.model, self.config, self.data
        checkpoint.write(self.out_dir / "Models" / self.name, self.write_checkpoint_files, self.manifest())
        self.snapshots.clear()
        results = {**results, "n_train": data.n_train, "n_targets": data.n_targets,
                   "stored_parameters": stored_parameters(model, self.number, self.phase),
                   "unknown_source_tokens": data.n_unknown, "unseen_test_targets": self.unseen_targets,
                   **history, "selection_metric": fit.selection_metric(self.task.kind) if data.n_valid else None,
                   "n_valid": data.n_valid, "backend": trainer.backend(), "config": config}
        checkpoint.write_json(results, self.out_dir / "Results" / f"{self.name}.json")
        self.log(f"wrote {self.out_dir / 'Models' / self.name} and {self.out_dir / 'Results' / (self.name + '.json')}")
        return results

    def manifest(self):
        counts = np.bincount(np.concatenate([o.ravel() for o in owners_of(self.model).values()]).astype(np.int64),
                             minlength=len(self.prune_ratios) + 1)
        return {"stage": self.name, "task": self.number, "phase": self.phase, "fingerprint": self.fingerprint,
                "t1_sha256": self.prints["t1_sha256"], "tasks": self.chain, "config": self.config,
                "backend": trainer.backend(),
                "ownership_counts": {("free" if k == 0 else f"T{k}"): int(c) for k, c in enumerate(counts)}}

    def write_checkpoint_files(self, directory):
        checkpoint.save_weights(directory / "weights.npz", weight_variables(self.model))
        pruning.save(directory, owners_of(self.model), self.prune_ratios, self.own_ratios)
        self.vocab.save(directory / "vocab.json")
        for n, target_vocab in self.targets.items():
            target_vocab.save(directory / f"targets_t{n}.json")
        checkpoint.write_json(self.config, directory / "config.json")


def check_previous(previous, stage_name, number, prints):
    """The previous checkpoint must come from the same T1 data, task order and (for ret) task file."""
    name = previous["stage"]
    if previous["t1_sha256"] != prints["t1_sha256"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {name} was trained on another T1 file: run {script_for('tp_t1')} first")
    for entry in previous["tasks"]:
        if entry["name"] != tasks.task(entry["task"]).name:
            raise checkpoint.CheckpointError(
                f"checkpoint {name} has T{entry['task']} = {entry['name']}, tasks.py says "
                f"{tasks.task(entry['task']).name}: run {script_for('tp_t' + str(entry['task']))} first")
    if stage_name.startswith("ret") and chain_entry(previous, number)["sha256"] != prints["task_sha256"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {name} was trained on another {tasks.task(number).file}: run {script_for(name)} first")


def main(stage_name, script_globals=None, argv=None):
    """Entry point of the stage scripts: one-line errors and exit status 2 on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        config, explicit = make_config(stage_name, hyperparameters(script_globals or {}), argv)
        return run_stage(stage_name, config, explicit)
    except (ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError,
            pruning.OwnershipError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python stage.py tp_tK|ret_tK [--name=value ...]")
    main(sys.argv[1], {}, sys.argv[2:])
