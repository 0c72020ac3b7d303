"""A stage's settings: every hyperparameter with its default, how a value is parsed, checked and
inherited along a chain, and what must hold of the paths before any work starts.

A stage's value of a setting comes from, last one winning: DEFAULTS, its script's block, run_all.py's
preset and the data set's tuned choices (presets.py), the command line; chain settings left None take
the previous checkpoint's, method settings left None their method's default (methods.py). `resolve`
merges such layers and says where each value came from (`--show_config`).
"""
import ast
from pathlib import Path

import paths
import trainer
from nextitnet import POOLINGS

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
                                    # the method's, its rule's defaults in methods.py)
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
SCRIPT_TYPES = (bool, int, float, str, list)
PRECISIONS = ("float32", "mixed_bfloat16")
EVAL_BLOCK = 64  # rows per compiled block of evaluation (evaluate.blocked); eval_batch_size is a multiple of it


class ConfigError(ValueError):
    """Bad stage name or hyperparameter."""


def resolve(layers):
    """Merge [(source, {setting: value})], the last one winning: (settings, {setting: its source})."""
    merged, sources = {}, {}
    for source, values in layers:
        for key, value in values.items():
            merged[key], sources[key] = value, source
    return merged, sources


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


def settle(config, explicit, rule, start_entry, task_l2, start_name):
    """A stage's settings once its start is known, checked: a retrain keeps its train phase's L2 and head
    pooling (`start_entry`: the task's entry in the start checkpoint `start_name`; None for a new head,
    which takes the task's L2); the method's own settings left None take its rule's defaults; a rule
    with linear heads trains every task with a full softmax."""
    config = dict(config)
    if config["l2"] is None:
        config["l2"] = start_entry["l2"] if start_entry else task_l2
    for key, value in rule.defaults.items():
        config[key] = value if config[key] is None else config[key]
    if rule.linear_heads:
        if "full_softmax" in explicit and not config["full_softmax"]:
            raise ConfigError("full_softmax=False: these stages train every task with a full softmax")
        config["full_softmax"] = True
    if start_entry and start_entry["task"] > 1:  # a retrain keeps its train phase's head
        pooling = start_entry.get("pooling", "last")
        if "pooling" in explicit and config["pooling"] != pooling:
            raise ConfigError(f"pooling={config['pooling']}: {start_name} made T{start_entry['task']}'s head with "
                              f"pooling={pooling}")
        config["pooling"] = pooling
    validate(config)
    return config


def check_paths(config, stage_name):
    """Before any work: the data folder exists, and this stage's outputs can be written and replace
    only an earlier run's checkpoint, results file and TensorBoard folder."""
    paths.input_dir(config["data_dir"], "data_dir")
    out_dir = paths.output_dir(config["out_dir"], "out_dir")
    paths.replaceable(out_dir / "Models" / stage_name, "out_dir", "a checkpoint", paths.manifest_folder("tasks"))
    paths.replaceable(out_dir / "Results" / f"{stage_name}.json", "out_dir", "a results file", Path.is_file)
    if config["tensorboard_dir"]:
        paths.output_dir(Path(config["tensorboard_dir"]) / stage_name, "tensorboard_dir")


def resolve_chain(config, explicit, previous, first_script):
    """Fill chain settings from the previous checkpoint; a value that disagrees with it is an error
    (`first_script`: the command that starts the chain again)."""
    config = dict(config)
    for key, default in CHAIN_DEFAULTS.items():
        inherited = previous["config"][key] if previous else default
        if config[key] is not None and previous and config[key] != inherited:
            source = f"--{key}" if key in explicit else "the hyperparameter block"
            raise ConfigError(
                f"{key}={config[key]!r} (from {source}) but checkpoint {previous['stage']} was made with "
                f"{key}={inherited!r}: run {first_script} with it first, or drop it")
        config[key] = inherited if config[key] is None else config[key]
    return config
