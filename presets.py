"""Named settings for `run_all.py --preset=...` and `tools/reproduce.py`, on top of each stage's script block.

  paper      every stage exactly as its script's block says (the release's schedule)
  quick      a small backbone and a few fast epochs: the whole chain in minutes on 2 CPU cores
  converged  every stage selects its best epoch on a validation slice (10% of its training
             split) and stops after `patience` evaluations without improvement, under an epoch
             cap. T1 leaves padding out of its loss, and uses the full softmax where the
             vocabulary is small. Learning rate, width and batch were chosen per data set on
             the validation slice only (TUNED, keyed by the T1 file's SHA-256; docs/training.md,
             "The converged preset", and docs/experiments.md list what was tried); other data
             get DEFAULT_CONVERGED. Conure's successors train their later tasks on the
             schedules of their released code (SUCCESSORS), with the later tasks' learning
             rate chosen per data set like Conure's (TUNED's "methods").
"""
import checkpoint
import data_loader
import hat
import methods
import settings
import tasks

PRESETS = ("quick", "paper", "converged")

QUICK_ARCHITECTURE = {"channels": 64, "dilations": [1, 4, 1, 4]}
QUICK = {
    "t1": {"epochs": 6, "eval_every": 0},
    "later": {"epochs": 6, "batch_size": 128, "learning_rate": 1e-3, "eval_every": 0},
}

FULL_SOFTMAX_MAX_ITEMS = 50_000  # converged T1: exact softmax up to this vocabulary, sampled above
SELECTION = {"valid": 0.1, "patience": 3, "eval_every": 1}
# Classification tasks train with a full softmax over their labels: it optimises the accuracy over
# all classes that is reported, where the release's loss ranks the truth above one random label.
# tools/reproduce.py runs the release's loss beside it (REPRODUCTION.md, "Classification losses").
CLASS = {"full_softmax": True}
DEFAULT_CONVERGED = {
    "architecture": QUICK_ARCHITECTURE,
    "t1": {"epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "exclude_padding": True, "patience": 5},
    "later": {"epochs": 15, "batch_size": 128, "learning_rate": 1e-3},
}
# Later tasks of Conure's successors under the converged preset, as their released code trains them:
# TERACON's ttl_train.sh and train_teracon.py (T2 at lr 1e-3, T3 on at 1e-4, batch 1,024, early stopping
# with patience 5 under a cap of 100 epochs). HAT keeps the preset's schedule (docs/hat.md).
LATER_RATE_DIVISOR = {"teracon": 10}  # --later_learning_rate sets T2's; T3 on take this share of it (TERACON: 1/10)
SUCCESSORS = {"teracon": {"t2": {"learning_rate": 1e-3},
                          "later": {"learning_rate": 1e-3 / LATER_RATE_DIVISOR["teracon"], "batch_size": 1024,
                                    "patience": 5, "epochs": 100}}}
# Conure beyond the release (docs/extension.md), with `run_all.py --extension`: its settings, over the
# preset's (TUNED's "extension" holds a data set's choices on its validation slice, and the command
# line can give any of them), and the stages each goes to: (phases, first task, kind of task or None: any).
# Each is a stage setting of the same name but item_loss, which sets full_softmax (ITEM_LOSSES).
EXTENSION = {"embedding": "delta",  # the others start where settings.DEFAULTS has them; item_loss at the release's BPR
             **{key: settings.DEFAULTS[key]
                for key in ("embedding_prune_ratio", "delta_rank", "pooling", "task_dropout", "shared_lr_scale")},
             "item_loss": "bpr"}
EXTENSION_STAGES = {"embedding": (("tp",), 1, None), "embedding_prune_ratio": (("tp",), 1, None),
                    "delta_rank": (("tp",), 2, None), "pooling": (("tp",), 2, "class"),
                    "task_dropout": (("tp", "ret"), 2, "class"), "shared_lr_scale": (("tp", "ret"), 2, "class"),
                    "item_loss": (("tp", "ret"), 2, "item")}
TUNED = {  # T1 file SHA-256 -> settings chosen on the validation slice (docs/training.md, "The converged preset")
    "450512b5d01dbb9614a4f38605821502d0b6299ef0567d8d55d76401d6af0c08": {
        "name": "ML-1M (prepare_data.py movielens, ml-1m)",
        "dataset": "ml-1m",  # its name in tools/reproduction/plan.py
        "architecture": {"channels": 256, "dilations": [1, 4]},
        "t1": {"valid_positions": 20},
        "later": {"learning_rate": 3e-4},
        # the successors' later tasks, chosen as Conure's: two values on T2's validation slice, seed 0
        "methods": {"hat": {"later": {"learning_rate": 1e-3}},
                    "teracon": {"t2": {"learning_rate": 1e-3}, "later": {"learning_rate": 1e-4}}},
        # the extension's settings, chosen one at a time on seed 0's validation slice (docs/extension.md)
        "extension": {"embedding": "delta", "pooling": "mean", "task_dropout": 0.0, "shared_lr_scale": 1.0,
                      "item_loss": "softmax"},
    },
    "cad3e4de7104d1203f4937c1035fcc0e0198f7db6d24bbe60487901bbae34188": {
        "name": "the TTL sample (10,000 users)",
        "dataset": "ttl-sample",
        "t1": {"patience": 2, "valid_positions": 20},
        # the extension's settings, chosen one at a time on seed 0's validation slice (docs/extension.md)
        "extension": {"embedding": "delta", "pooling": "attention", "task_dropout": 0.0, "shared_lr_scale": 1.0,
                      "item_loss": "softmax"},
    },
}


class DataSettings:
    """What a preset needs to know of a data set: its T1 file's SHA-256 and vocabulary size."""

    def __init__(self, data_dir):
        path = data_loader.task_file({"data_dir": data_dir}, 1)
        self.t1_sha256 = checkpoint.file_sha256(path)
        self.vocab_size = data_loader.read_t1(path).vocab.size
        self.tuned = TUNED.get(self.t1_sha256)

    @property
    def name(self):
        return self.tuned["name"] if self.tuned else "untuned data"

    def converged(self):
        """DEFAULT_CONVERGED with this data set's tuned entries on top, part by part."""
        tuned = self.tuned or {}
        return {part: {**DEFAULT_CONVERGED[part], **tuned.get(part, {})} for part in ("architecture", "t1", "later")}


CLASS_LOSSES = ("logistic", "softmax")  # the release's logistic loss against one other label, or full softmax
ITEM_LOSSES = ("bpr", "softmax")  # later item tasks: the release's BPR with one negative, or full softmax
HAT_OPTIMIZERS = ("adam", "sgd")  # HAT's stages: the preset's Adam, or its release's SGD schedule (hat.py)


def layers(name, preset, data=None, chain=None, class_loss=None, later_learning_rate=None, extension=None,
           item_loss=None, hat_optimizer=None):
    """[(source, {setting: value})] of stage `name` under `preset`, in the order they apply (the last one
    wins; settings.resolve): the preset's own settings ([] for "paper": the script's block alone; `data`,
    a DataSettings, is needed by "converged"), then run_all.py's options: `extension` ({setting: value}, or
    None: off) adds the extension's settings to Conure's; `hat_optimizer` "sgd" trains HAT's stages as its
    release does (hat.RELEASED_TRAINING); `chain` (channels, dilations, train_share, min_item_count) sets
    those of fresh models; `class_loss` the loss of classification tasks, `item_loss` that of item tasks
    after T1; `later_learning_rate` the learning rate of T2 and later tasks (TERACON's T3 on: a tenth of
    it, LATER_RATE_DIVISOR)."""
    phase, number = methods.parse_stage(name)
    kind, fresh = tasks.task(number).kind, methods.previous_stage(name) is None  # a fresh model
    found = preset_layers(name, preset, data)
    if extension is not None:
        found += extension_layers(name, data, extension)
    if hat_optimizer == "sgd" and phase == "hat":
        found.append(("run_all.py --hat_optimizer=sgd (hat.RELEASED_TRAINING)", hat.RELEASED_TRAINING))
    if chain and fresh:
        found.append(("run_all.py's chain options", chain))
    if class_loss and kind == "class":
        found.append((f"run_all.py --class_loss={class_loss}", {"full_softmax": class_loss == "softmax"}))
    if item_loss and number > 1 and kind == "item":
        found.append((f"run_all.py --item_loss={item_loss}", {"full_softmax": item_loss == "softmax"}))
    if later_learning_rate and number > 1:
        rate = later_learning_rate / (1 if number == 2 else LATER_RATE_DIVISOR.get(phase, 1))
        found.append((f"run_all.py --later_learning_rate={later_learning_rate:g}", {"learning_rate": rate}))
    return [(source, values) for source, values in found if values]


def overrides(name, preset, data=None, **options):
    """The settings `layers` give stage `name`, merged."""
    return settings.resolve(layers(name, preset, data, **options))[0]


def baseline_epochs(tp_epochs, ret_epochs):
    """A baseline trains its one stage of a task as long as Conure's tp and ret stages of it together."""
    return tp_epochs + ret_epochs


def preset_layers(name, preset, data):
    """The preset's layers of stage `name`: its own settings, the data set's tuned choices over them."""
    if preset == "paper":
        return []
    phase, number = methods.parse_stage(name)
    part, fresh = "t1" if number == 1 else "later", methods.previous_stage(name) is None  # a fresh model
    if preset == "quick":
        epochs = {} if phase in methods.CONURE_PHASES else {
            "epochs": baseline_epochs(QUICK[part]["epochs"], QUICK[part]["epochs"])}
        return [("preset quick", {**QUICK[part], **epochs, **(QUICK_ARCHITECTURE if fresh else {})})]
    tuned, source = data.tuned or {}, f"tuned for {data.name} (presets.TUNED)"
    found = [("preset converged", {**SELECTION, **DEFAULT_CONVERGED[part]}), (source, tuned.get(part, {}))]
    if number == 1 and not methods.RULES[phase].linear_heads and "full_softmax" not in {**found[0][1], **found[1][1]}:
        found.append(("preset converged: the vocabulary's size", {
            "full_softmax": data.vocab_size <= FULL_SOFTMAX_MAX_ITEMS}))  # TERACON's heads take it whatever the size
    if tasks.task(number).kind == "class":
        found.append(("preset converged", CLASS))
    if number > 1:
        methods_tuned = (tuned.get("methods") or {}).get(phase, {})
        for where, schedule in (("preset converged: the method's release", SUCCESSORS.get(phase, {})),
                                (source, methods_tuned)):
            found.append((where, {**schedule.get("later", {}), **(schedule.get("t2", {}) if number == 2 else {})}))
    if fresh:
        found += [("preset converged", DEFAULT_CONVERGED["architecture"]), (source, tuned.get("architecture", {}))]
    return [(where, values) for where, values in found if values]


def extension_layers(name, data=None, given=None):
    """The extension's layers of Conure stage `name`: EXTENSION, `data`'s choices (TUNED's "extension")
    and `given` ({setting: value}), each where EXTENSION_STAGES sends it (item_loss: as full_softmax)."""
    phase, number = methods.parse_stage(name)
    if phase not in methods.CONURE_PHASES:
        raise settings.ConfigError(f"--extension: an extension of Conure, not of the {phase} stages")
    sources = [("the extension's default (presets.EXTENSION)", EXTENSION),
               (f"tuned for {data.name}: the extension (presets.TUNED)" if data else "",
                ((data and data.tuned) or {}).get("extension", {})),
               ("run_all.py --extension=...", given or {})]
    unknown = {key for _, chosen in sources for key in chosen} - set(EXTENSION_STAGES)
    if unknown:
        raise settings.ConfigError(f"--extension: unknown {', '.join(sorted(unknown))} (known: {', '.join(EXTENSION)})")
    item_loss = {**EXTENSION, **sources[1][1], **sources[2][1]}["item_loss"]
    if item_loss not in ITEM_LOSSES:
        raise settings.ConfigError(f"--extension: item_loss={item_loss!r}, one of {', '.join(ITEM_LOSSES)}")
    found = []
    for where, chosen in sources:
        found.append((where, {}))
        for key, value in chosen.items():
            if reaches(key, phase, number) and (key != "embedding" or number == 1):
                found[-1][1].update({"full_softmax": value == "softmax"} if key == "item_loss" else {key: value})
    return found


def extension_settings(name, data=None, given=None):
    """The extension's settings of Conure stage `name` (extension_layers, merged)."""
    return settings.resolve(extension_layers(name, data, given))[0]


def reaches(key, phase, number):
    """Whether the extension's setting `key` goes to the stage of `phase` and task `number`."""
    phases, first, kind = EXTENSION_STAGES[key]
    return phase in phases and number >= first and kind in (None, tasks.task(number).kind)
