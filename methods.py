"""The kinds of stage: how each method trains task K (Rule), and the names of its stages.

A Conure stage is "tp_tK" (train task K on the free weights, then prune: task K takes its share)
or "ret_tK" (retrain task K's own weights only). tp_t1 starts from scratch; every other stage starts
from the checkpoint of the stage before it: tp_tK from ret_t(K-1), ret_tK from tp_tK.

The baselines of docs/design.md section 9 are stages too, named <method>_tK: sinmo_tK trains a
fresh model on task K alone; sinmoall_tK fine-tunes everything, starting from sinmoall_t(K-1)
(sinmo_t1 for K = 2); finall_tK, finesmax_tK and peterrec_tK start from sinmo_t1. Conure's
successors HAT and TERACON (hat_tK, teracon_tK) gate the conv outputs per task and start from
their own stage of task K-1 (docs/hat.md, docs/teracon.md). A new method is a rule here and a
module of its own (docs/design.md, "Where things go").
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import hat
import objective
import settings
import tasks
import teracon


@dataclass(frozen=True)
class Rule:
    """How a kind of stage trains task K. Views are the conv-kernel views of nextitnet.py; `defaults`
    are the values of the method's own settings (None in settings.DEFAULTS) from its released code."""
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
    one_model: bool = False   # one model serves every task it finished: each is scored after every later stage
    defaults: dict = field(default_factory=dict)
    objective: Callable = objective.plain  # objective.py: the loss, batch extras and update rules of a stage


RULES = {
    "tp": Rule("train", "infer", shared=False, convs=True, prune=True, shared_t1=True, one_model=True),
    "ret": Rule("retrain", "infer", shared=False, convs=True, one_model=True),
    "sinmo": Rule("full", "full", shared=True, convs=True),
    "sinmoall": Rule("full", "full", shared=True, convs=True, first_task=2, one_model=True),
    "finall": Rule("full", "full", shared=True, convs=True, first_task=2),
    "finesmax": Rule("full", "full", shared=False, convs=False, first_task=2),
    "peterrec": Rule("full", "full", shared=False, convs=False, patches=True, first_task=2),
    "hat": Rule("full", "full", shared=False, convs=True, shared_t1=True, gates="hat", one_model=True,
                defaults={"smax": 400.0, "hat_c": 0.75}, objective=hat.objective),
    "teracon": Rule("full", "full", shared=True, convs=True, gates="teracon", every_task=True, linear_heads=True,
                    one_model=True, defaults={"smax": 50.0, "alpha": 0.7, "retention_items": 65536},
                    objective=teracon.objective),
}

CONURE_PHASES = ("tp", "ret")  # Conure's two stages of a task: train and prune, then retrain


def method_of(phase):
    """The method a kind of stage belongs to: 'conure' for tp and ret, else the kind itself."""
    return "conure" if phase in CONURE_PHASES else phase


def rule_of(method):
    """The rule of a method's stage that finishes a task (Conure: ret)."""
    return RULES[CONURE_PHASES[-1] if method == "conure" else method]


def own_stage(method, number):
    """The stage that finishes task K under `method` (a method name or one of its kinds of stage)."""
    method = method_of(method)
    if method == "conure":
        return f"{CONURE_PHASES[-1]}_t{number}"
    return "sinmo_t1" if number == 1 and not RULES[method].gates else f"{method}_t{number}"


def stage_names(method, numbers):
    """The stages a method runs, in order, for tasks `numbers` (a chain from T1)."""
    if method == "conure":
        return [f"{phase}_t{k}" for k in numbers for phase in CONURE_PHASES]
    return list(dict.fromkeys(own_stage(method, k) for k in numbers))


def parse_stage(name):
    """'tp_t3' -> ('tp', 3)."""
    phase, _, number = name.partition("_t")
    if phase not in RULES or not number.isdigit():
        raise settings.ConfigError(f"stage {name!r}: expected <kind>_tK with kind one of {', '.join(RULES)}")
    number = int(number)
    try:
        tasks.task(number)
    except KeyError as e:
        raise settings.ConfigError(f"stage {name!r}: {e.args[0]}")
    if number < RULES[phase].first_task:
        raise settings.ConfigError(f"stage {name!r}: {phase} starts at T{RULES[phase].first_task} (its T1 is sinmo_t1)")
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


def not_retrained(name, number):
    """Why stage `name` cannot answer task K though it holds it (tp_tK: pruned, not retrained), or None."""
    if name == f"{CONURE_PHASES[0]}_t{number}":
        return f"holds T{number} pruned but not retrained: use {own_stage('conure', number)} or a later stage"
    return None


def script_for(name):
    phase, number = parse_stage(name)
    script = f"conure_{phase}_t{number}.py"
    return script if Path(__file__).with_name(script).exists() else f"stage.py {name}"
