"""The task sequence: each task's number, name, TTL file and kind, in one place (docs/design.md section 2).

kind "next_item": T1, next item over the T1 vocabulary, sampled or full softmax.
kind "item":      target items in their own id space, BPR with the LambdaFM popularity sampler.
kind "class":     one class label per line, logistic loss against one uniform other label.
`l2` is the L2 penalty on the task's target table (TF1 l2_regularizer scale).

A task's number is its position in TASKS (1-based): conure_tp_t2.py trains whatever task stands
second. To reorder tasks or add a seventh, edit this list (and copy a pair of stage scripts, or
run `python stage.py tp_t7`); T1 must stay the next-item task.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    file: str
    kind: str
    l2: float = 0.0


TASKS = [
    Task("next_item", "original_desen_pretrain.csv", "next_item"),
    Task("clicks", "original_desen_finetune_click_nouserID.csv", "item", l2=0.02),
    Task("likes", "original_desen_finetune_like_nouserID.csv", "item", l2=0.05),
    Task("gender", "original_desen_gender.csv", "class", l2=0.02),
    Task("age", "original_desen_age.csv", "class", l2=0.02),
    Task("life_status", "original_desen_lifestatus.csv", "class", l2=0.02),
]
# The task files by task number ("T1": ...), as data preparation writes them.
FILES = {f"T{number}": t.file for number, t in enumerate(TASKS, 1)}


def task(number):
    """The task at 1-based position `number`."""
    if not 1 <= number <= len(TASKS):
        raise KeyError(f"no task {number}: tasks are 1..{len(TASKS)} ({', '.join(t.name for t in TASKS)})")
    return TASKS[number - 1]


def parse_numbers(text, chain=False):
    """'1-6', '1,2,4' or '2' -> sorted task numbers; with `chain`, they must run from T1 without gaps.
    ValueError names the problem."""
    numbers = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            numbers.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"expected a range like 1-{len(TASKS)} or a list like 1,2,4") from None
    for number in sorted(numbers):
        try:
            task(number)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
    if not numbers:
        raise ValueError("no task in this range")
    if chain and sorted(numbers) != list(range(1, len(numbers) + 1)):
        raise ValueError(f"tasks must run 1, 2, ... up to {len(TASKS)} without gaps")
    return sorted(numbers)
