"""Stage runner: what every `conure_<tp|ret>_t<k>.py` script does after its hyperparameter block.

A stage trains one task on the checkpoint of the stage before it, as its method's rule says
(methods.py: Conure's tp and ret stages, the baselines, HAT, TERACON); StageRun is its steps, in order.

    python stage.py tp_t7 --epochs=5      # any stage, for tasks that have no script of their own
    python stage.py finall_t2 --epochs=45
"""
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

import assembly
import checkpoint
import data_loader
import evaluate
import fit
import gates
import hat
import methods
import objective
import paths
import pruning
import settings
import tasks
import trainer
import keras  # noqa: E402  (after trainer, which quiets TensorFlow's logging)


def check_config(stage_name, config):
    """Everything about a stage's settings and paths that can be checked before its start is read."""
    settings.validate(config)
    phase, number = methods.parse_stage(stage_name)
    if number > 1 and config["valid_positions"] != 1:
        raise settings.ConfigError(f"valid_positions={config['valid_positions']}: T1 only (a T{number} example has "
                                   "one target)")
    for method, rule in methods.RULES.items():
        for key in rule.defaults:
            if config[key] is not None and key not in methods.RULES[phase].defaults:
                raise settings.ConfigError(f"{key}={config[key]!r}: a setting of {method} stages, not of {stage_name}")
    if methods.RULES[phase].gates and config["data_parallel"]:
        raise settings.ConfigError(f"data_parallel=True: {phase} stages run on one device")
    if methods.RULES[phase].every_task and config["select_on"] == "loss":
        raise settings.ConfigError(f"select_on=loss: not for {phase} stages (their retention loss needs a training "
                                   "batch's samples)")
    check_extension_scope(phase, number, config)
    settings.check_paths(config, stage_name)


def check_extension_scope(phase, number, config):
    """Where the settings beyond the release apply: Conure's stages only (another method's
    protection of earlier tasks, HAT's scaled updates say, is not made for them), and a head's
    pooling, dropout and shared learning-rate scale to later tasks only."""
    if config["embedding"] not in (None, "frozen") and phase not in methods.CONURE_PHASES:
        raise settings.ConfigError(f"embedding={config['embedding']}: Conure's stages (tp, ret) only, not {phase}")
    for key in ("pooling", "task_dropout", "shared_lr_scale"):
        if phase not in methods.CONURE_PHASES and config[key] != settings.DEFAULTS[key]:
            raise settings.ConfigError(f"{key}={config[key]!r}: a setting of Conure's stages (tp, ret), not of "
                                       f"{phase}_t{number}")
        if number == 1 and config[key] != settings.DEFAULTS[key]:
            raise settings.ConfigError(f"{key}={config[key]!r}: a setting of T2 and later tasks, not of T1")


def make_config(stage_name, block, argv):
    """DEFAULTS < script block < command line. Returns (config, names given on the command line)."""
    config, explicit, _ = config_layers(stage_name, block, argv)
    return config, explicit


def config_layers(stage_name, block, argv):
    """(config, names given on the command line, {setting: its source}) of a stage script's settings."""
    methods.parse_stage(stage_name)
    given = settings.parse_overrides(argv, {**settings.DEFAULTS, **block})
    config, sources = settings.resolve([("default (settings.DEFAULTS)", settings.DEFAULTS),
                                        (f"script block ({methods.script_for(stage_name)})", block),
                                        ("command line", given)])
    return config, set(given), sources


def show_config(stage_name, config, explicit, sources, start=None):
    """Lines: every setting of stage `stage_name` with the value it will train with and where that came
    from, including what it takes from its start, before any work: `start` (name, config, chain
    entries) where the caller knows it (run_all.py, a chain not run yet), else its checkpoint if there
    is one. Returns (lines, the settled config)."""
    phase, number = methods.parse_stage(stage_name)
    rule, name = methods.RULES[phase], methods.previous_stage(stage_name)
    if start is None and name and (Path(config["out_dir"]) / "Models" / name / "manifest.json").exists():
        manifest = checkpoint.read_manifest(Path(config["out_dir"]) / "Models" / name, methods.script_for(name))
        start = (name, {**settings.ADDED_LATER, **manifest["config"]}, manifest["tasks"])
    previous = start and {"stage": start[0], "config": start[1], "tasks": start[2]}
    settled, sources = settings.resolve_chain(config, explicit, previous, methods.script_for("tp_t1")), dict(sources)
    where = {key: f"the previous stage, {name}" if previous else "the chain's default (settings.CHAIN_DEFAULTS)"
             + (f" until {name}'s checkpoint exists" if name else "") for key in settings.CHAIN_DEFAULTS}
    entry = next((e for e in previous["tasks"] if e["task"] == number), None) if previous and phase == "ret" else None
    if phase == "ret" and not entry:
        where["l2"] = f"{name}'s checkpoint, once it exists"
    else:
        settled = settings.settle(settled, explicit, rule, entry, tasks.task(number).l2, name)
        where["l2"] = f"the previous stage, {name}" if entry else "the task's (tasks.py)"
        where.update({key: "the method's default (methods.py)" for key in rule.defaults})
        where.update({"pooling": f"the previous stage, {name}"} if entry and number > 1 else {})
        where.update({"full_softmax": "the method's rule (methods.py)"} if rule.linear_heads else {})
    for key, value in settled.items():
        if value != config[key] or (config[key] is None and key in where):
            sources[key] = where.get(key, sources.get(key))
    width = max(map(len, settled))
    return [f"{stage_name}:"] + [f"  {key:<{width}}  {value!r:<26} {sources.get(key, '')}"
                                 for key, value in settled.items()], settled


def run_fingerprint(stage_name, config, prints, previous):
    """What a snapshot must match to be resumed: stage, settings that change training, data, start.
    Paths are left out: the data are identified by their hashes, the start by its files' hashes."""
    cosmetic = {"verbose", "eval_cap", "eval_batch_size", "eval_chunk", "save_every", "tensorboard_dir", "data_dir",
                "out_dir"}
    kept = {k: v for k, v in config.items()
            if k not in cosmetic and not (k in settings.ADDED_LATER and v == settings.ADDED_LATER[k])}
    start = previous["files"] if previous else None
    return hashlib.sha256(json.dumps([stage_name, kept, prints, start], sort_keys=True).encode()).hexdigest()


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
            raise settings.ConfigError(f"batch_size={config['batch_size']} does not split evenly over "
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
        self.name, (self.phase, self.number) = stage_name, methods.parse_stage(stage_name)
        self.rule, self.task = methods.RULES[self.phase], tasks.task(self.number)
        self.config, self.out_dir = config, Path(config["out_dir"])
        self.log = print if config["verbose"] else (lambda *a: None)
        check_config(stage_name, config)

    def restore_start(self):
        """The previous stage's checkpoint (model, manifest, vocabularies, prune ratios), or nothing."""
        self.previous_name = methods.previous_stage(self.name)
        self.model, self.previous, self.vocab, self.targets, self.prune_ratios = None, None, None, {}, []
        self.teacher = None  # TERACON: the model after the previous stage, frozen
        self.own_ratios = {}  # prune ratios of the owner maps with their own (the shared item embedding)
        if self.previous_name:
            directory = self.out_dir / "Models" / self.previous_name
            self.model, self.previous, self.vocab, self.targets, self.prune_ratios = assembly.restore(
                directory, methods.script_for(self.previous_name), self.config["precision"])
            self.own_ratios = pruning.load_own_ratios(directory)

    def settle_config(self, explicit):
        """Chain settings from the start, the task's L2, checked; the data's fingerprints against the start."""
        config = settings.resolve_chain(self.config, set(explicit), self.previous, methods.script_for("tp_t1"))
        start_entry = assembly.chain_entry(self.previous, self.number) if self.phase == "ret" else None
        config = settings.settle(config, set(explicit), self.rule, start_entry, self.task.l2, self.previous_name)
        self.config, self.prints = config, data_loader.fingerprints(config, self.number)
        if self.previous:
            check_previous(self.previous, self.name, self.number, self.prints)

    def load_data(self):
        """The task's split data, encoded with T1's vocabulary; a retrain's targets must be its start's."""
        config, number = self.config, self.number
        if self.vocab is None and number > 1:  # a fresh model for a later task (SinMo) still reads T1's vocabulary
            self.vocab = data_loader.load_task_data(1, config).vocab
        data = self.data = data_loader.load_task_data(number, config, self.vocab)
        self.vocab = self.vocab or data.vocab
        settings.check_receptive_field(config, data.seq_len)
        if number > 1:
            self.log(f"{self.task.file}: {data.n_unknown} source tokens unknown to the T1 vocabulary "
                     "(mapped to <unk>)")
            if self.phase == "ret" and self.targets[number].tokens != data.targets.tokens:
                raise checkpoint.CheckpointError(
                    f"checkpoint {self.previous_name} has other T{number} targets than "
                    f"{data_loader.task_file(config, number)}: run {methods.script_for(self.previous_name)} first")
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
            chain.append(assembly.new_entry(self.task, number, config, self.rule, self.data.n_targets,
                                            self.prints["task_sha256"]))
            if self.previous and self.rule.every_task:  # TERACON: the start is kept as the teacher
                self.teacher, self.model = self.model, assembly.build_model(self.vocab.size, config, chain)
                checkpoint.load_matching_weights(self.out_dir / "Models" / self.previous_name / "weights.npz",
                                                 assembly.weight_variables(self.model))
                assembly.set_owners(self.model, assembly.owners_of(self.teacher))
            elif self.previous:
                keras.utils.set_random_seed(config["seed"])
                assembly.add_task(self.model, chain[-1])
            else:
                self.model = assembly.build_model(self.vocab.size, config, chain)
        else:  # the retrained head takes this stage's l2, and the checkpoint records it
            chain = [{**entry, "l2": config["l2"]} if entry["task"] == number else entry for entry in chain]
            self.model.head(number).l2 = config["l2"]
        self.model.softmax_chunk = config["softmax_chunk"]
        if self.rule.gates:
            self.model.smax = config["smax"]
        self.chain = chain
        self.fingerprint = run_fingerprint(self.name, config, self.prints, self.previous)

    def train(self):
        """fit.train on the variables the stage's rule trains and its method's objective; returns the
        training history."""
        model, number, rule, config = self.model, self.number, self.rule, self.config
        shared = rule.shared or (rule.shared_t1 and number == 1)
        owned = config["embedding"] == "owned"  # then trained in every Conure stage, through its owner map
        model.set_trainable(number, shared=shared, convs=rule.convs, patches=rule.patches, every_task=rule.every_task,
                            embedding=(shared or owned) and not config["freeze_embedding"])
        view_while_training = rule.train_view if rule.prune else rule.eval_view
        self.snapshots = fit.Snapshots(self.out_dir / "Models" / f".{self.name}.resume", self.fingerprint)
        goal, stream = rule.objective(self), objective.stream(self)
        valid_loss = config["select_on"] == "loss" and fit.validation_loss(
            goal.loss, self.data.valid_batches(config, stream), model.variables, goal.at_inference)
        return fit.train(
            model, goal.loss, self.data, config,
            evaluate=lambda part: evaluate.score(model, number, self.data, config, view_while_training, part),
            log=self.log, snapshots=self.snapshots, stream=stream,
            scalars_dir=config["tensorboard_dir"] and Path(config["tensorboard_dir"]) / self.name,
            extras=goal.extras, update_scales=goal.update_scales, frozen=goal.frozen, side_rules=goal.side_rules,
            clip_norm=goal.clip_norm, valid_loss=valid_loss or None)

    def prune_and_evaluate(self):
        """A tp stage's pruning (the task takes its share of the free weights), then held-out metrics."""
        model, number, rule, config = self.model, self.number, self.rule, self.config
        results = {"stage": self.name, "task": number, "task_name": self.task.name, "kind": self.task.kind}
        if rule.prune:
            results["before_prune"] = evaluate.score(model, number, self.data, config, rule.train_view)
            self.log("before pruning: " + fit.format_metrics(results["before_prune"]))
            self.prune_ratios, self.own_ratios, report = assembly.prune(model, number, config, self.prune_ratios,
                                                                        self.own_ratios)
            self.log(report)
        final = evaluate.score(model, number, self.data, config, rule.eval_view)
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
        manifest = {"stage": self.name, "task": self.number, "phase": self.phase, "fingerprint": self.fingerprint,
                    "t1_sha256": self.prints["t1_sha256"], "tasks": self.chain, "config": config,
                    "backend": trainer.backend(),
                    "ownership_counts": assembly.ownership_counts(model, len(self.prune_ratios))}
        checkpoint.write(self.out_dir / "Models" / self.name, lambda directory: assembly.save(
            directory, model, self.vocab, self.targets, config, self.prune_ratios, self.own_ratios), manifest)
        self.snapshots.clear()
        results = {**results, "n_train": data.n_train, "n_targets": data.n_targets,
                   "stored_parameters": assembly.stored_parameters(model, self.number, self.phase),
                   "unknown_source_tokens": data.n_unknown, "unseen_test_targets": self.unseen_targets,
                   **history, "selection_metric": fit.selection_metric(self.task.kind) if data.n_valid else None,
                   "n_valid": data.n_valid, "backend": trainer.backend(), "config": config}
        checkpoint.write_json(results, self.out_dir / "Results" / f"{self.name}.json")
        self.log(f"wrote {self.out_dir / 'Models' / self.name} and {self.out_dir / 'Results' / (self.name + '.json')}")
        return results


def check_previous(previous, stage_name, number, prints):
    """The previous checkpoint must come from the same T1 data, task order and (for ret) task file."""
    name = previous["stage"]
    if previous["t1_sha256"] != prints["t1_sha256"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {name} was trained on another T1 file: run {methods.script_for('tp_t1')} first")
    for entry in previous["tasks"]:
        if entry["name"] != tasks.task(entry["task"]).name:
            raise checkpoint.CheckpointError(
                f"checkpoint {name} has T{entry['task']} = {entry['name']}, tasks.py says "
                f"{tasks.task(entry['task']).name}: run {methods.script_for('tp_t' + str(entry['task']))} first")
    if stage_name.startswith("ret") and assembly.chain_entry(previous, number)["sha256"] != prints["task_sha256"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {name} was trained on another {tasks.task(number).file}: run {methods.script_for(name)} first")


def main(stage_name, script_globals=None, argv=None):
    """Entry point of the stage scripts: one-line errors and exit status 2 on bad input; with
    --show_config, every setting with its value and source, and no work."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        block = settings.hyperparameters(script_globals or {})
        config, explicit, sources = config_layers(stage_name, block, [a for a in argv if a != "--show_config"])
        if "--show_config" in argv:
            print("\n".join(show_config(stage_name, config, explicit, sources)[0]))
            return None
        return run_stage(stage_name, config, explicit)
    except (settings.ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError,
            pruning.OwnershipError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python stage.py tp_tK|ret_tK [--name=value ...]")
    main(sys.argv[1], {}, sys.argv[2:])
