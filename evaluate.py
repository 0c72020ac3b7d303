"""Evaluate task K with the checkpoint of any stage at or after K's retrain (or any baseline
checkpoint that holds task K).

    python evaluate.py --task=1 --stage=ret_t4 [--data_dir=Data/Session --out_dir=Data --eval_cap=0]

Prints the held-out metrics and writes them, with `scores_sha256` (SHA-256 of the held-out score
matrix), to <out_dir>/Results/eval_t<K>_<stage>.json. Equal hashes for T1 after ret_t1 and after
ret_t4 mean T1's predictions did not change by a single bit: zero forgetting.
"""
import argparse
import sys
from pathlib import Path

import checkpoint
import data_loader
import stage
import tasks


def evaluate_task(number, stage_name, data_dir="Data/Session", out_dir="Data", eval_cap=0, eval_batch_size=256,
                  data=None):
    """Held-out metrics of task `number` under checkpoint `stage_name`; writes and returns them.
    `data`: the task's split data, if the caller already loaded it with this chain's vocabulary."""
    phase, _ = stage.parse_stage(stage_name)
    if stage_name == f"tp_t{number}":
        raise stage.ConfigError(f"stage {stage_name} holds T{number} pruned but not retrained: "
                                f"use ret_t{number} or a later stage")
    directory = Path(out_dir) / "Models" / stage_name
    model, manifest, vocab, _, _ = stage.restore(directory, stage.script_for(stage_name))
    entry = stage.chain_entry(manifest, number)
    config = {**manifest["config"], "data_dir": data_dir, "eval_cap": eval_cap,
              "eval_batch_size": eval_batch_size}
    prints = stage.fingerprints(config, number)
    if prints["t1_sha256"] != manifest["t1_sha256"] or prints["task_sha256"] != entry["sha256"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {stage_name} was trained on other data than {data_dir}: pass the data_dir it used")
    data = data or stage.load_task_data(number, config, vocab)
    result = {"task": number, "task_name": entry["name"], "stage": stage_name,
              **stage.evaluate(model, number, data, config, stage.RULES[phase].eval_view)}
    checkpoint.write_json(result, Path(out_dir) / "Results" / f"eval_t{number}_{stage_name}.json")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=int, required=True, help="task number K (1..%d)" % len(tasks.TASKS))
    parser.add_argument("--stage", required=True, help="checkpoint stage, e.g. ret_t4")
    parser.add_argument("--data_dir", default=stage.DEFAULTS["data_dir"])
    parser.add_argument("--out_dir", default=stage.DEFAULTS["out_dir"])
    parser.add_argument("--eval_cap", type=int, default=0, help="at most this many held-out examples (0: all)")
    parser.add_argument("--eval_batch_size", type=int, default=stage.DEFAULTS["eval_batch_size"])
    args = parser.parse_args(argv)
    try:
        result = evaluate_task(args.task, args.stage, args.data_dir, args.out_dir, args.eval_cap, args.eval_batch_size)
    except (stage.ConfigError, data_loader.DataError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"T{args.task} ({result['task_name']}) with {args.stage}, {result['n_eval']:,} held-out examples: "
          + stage.format_metrics(result))
    print(f"scores_sha256 {result['scores_sha256']}")
    return result


if __name__ == "__main__":
    main()
