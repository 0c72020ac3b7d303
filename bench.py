"""Benchmarks. Each case is a function in CASES; run one with --case=NAME.

    python bench.py --case=parse [--lines=1450000 --items=645974 --seed=0]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEQ_LEN = 100
FULL_LINE_SHARE = 0.25        # TTL: about a quarter of users fill all 100 slots ...
SHORT_LINE_MAX = 80           # ... the rest have 1..79 items, for a mean of ~55 non-padding tokens
ZIPF_EXPONENT = 0.6           # rank-frequency slope of the real 10k sample is about -0.4 to -0.7
GENERATE_CHUNK_LINES = 100_000


# ---------------------------------------------------------------------------------------
# parse: read_t1 on a TTL-shaped synthetic T1 file
# ---------------------------------------------------------------------------------------

def write_synthetic_t1(path: Path, n_lines: int, n_items: int, seed: int) -> None:
    """A T1 file shaped like TTL: left-padded lines of SEQ_LEN tokens, Zipf-like item
    popularity, every item used at least once, item tokens distinct integers of up to 6 digits."""
    rng = np.random.default_rng(seed)
    names = _item_names(rng, n_items)
    lengths = _line_lengths(rng, n_lines)
    item_stream = _item_stream(rng, n_items, int(lengths.sum()))
    with open(path, "wb") as out:
        start_line, start_item = 0, 0
        while start_line < n_lines:
            chunk = lengths[start_line:start_line + GENERATE_CHUNK_LINES]
            end_item = start_item + int(chunk.sum())
            codes = _padded_codes(chunk, item_stream[start_item:end_item], pad_code=n_items)
            out.write(_lines_text(names, codes))
            start_line, start_item = start_line + len(chunk), end_item


def _item_names(rng, n_items: int) -> pa.Array:
    """Distinct integer strings 1..999999 for the items, then the padding token last."""
    numbers = rng.choice(np.arange(1, 1_000_000), size=n_items, replace=False)
    return pa.concat_arrays([pa.array(numbers).cast(pa.string()), pa.array(["0"])])


def _line_lengths(rng, n_lines: int) -> np.ndarray:
    full = rng.random(n_lines) < FULL_LINE_SHARE
    return np.where(full, SEQ_LEN, rng.integers(1, SHORT_LINE_MAX, n_lines))


def _item_stream(rng, n_items: int, n_tokens: int) -> np.ndarray:
    """n_tokens item codes: each item once, the rest Zipf-distributed, shuffled."""
    weights = 1.0 / np.arange(1, n_items + 1) ** ZIPF_EXPONENT
    n_extra = max(n_tokens - n_items, 0)
    popular = np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(n_extra))
    stream = np.concatenate([np.arange(n_items), np.minimum(popular, n_items - 1)])[:n_tokens]
    rng.shuffle(stream)
    return stream.astype(np.int32)


def _padded_codes(lengths: np.ndarray, items: np.ndarray, pad_code: int) -> np.ndarray:
    """[n, SEQ_LEN] codes: each line's items right-aligned after pad_code."""
    codes = np.full((len(lengths), SEQ_LEN), pad_code, dtype=np.int32)
    codes[np.arange(SEQ_LEN) >= (SEQ_LEN - lengths)[:, None]] = items  # row-major fill keeps order
    return codes


def _lines_text(names: pa.Array, codes: np.ndarray) -> bytes:
    """File text of the code rows: tokens joined by ",", lines by "\\n"."""
    tokens = names.take(pa.array(codes.ravel()))
    lines = pc.binary_join(_as_lists(tokens, SEQ_LEN), ",")
    return pc.binary_join(_as_lists(lines, len(lines)), "\n")[0].as_py().encode() + b"\n"


def _as_lists(values: pa.Array, list_length: int) -> pa.ListArray:
    offsets = np.arange(0, len(values) + 1, list_length, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _run_python(script: str, *args) -> dict:
    """Run script in a fresh interpreter (cwd: this folder) and parse the JSON it prints last."""
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).parent)
    return json.loads(result.stdout.strip().splitlines()[-1])


# Generation runs in its own interpreter too: a child started by fork/exec inherits its
# parent's peak RSS in ru_maxrss, so a parent that had generated the file would inflate it.
_GENERATE = (
    "import json, sys, time\n"
    "from pathlib import Path\n"
    "import bench\n"
    "start = time.perf_counter()\n"
    "bench.write_synthetic_t1(Path(sys.argv[1]), *map(int, sys.argv[2:]))\n"
    "print(json.dumps({'seconds': time.perf_counter() - start}))\n"
)

_READ_T1 = (
    "import json, resource, sys, time\n"
    "import data_loader\n"
    "start = time.perf_counter()\n"
    "data = data_loader.read_t1(sys.argv[1])\n"
    "seconds = time.perf_counter() - start\n"
    "peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
    "print(json.dumps({'lines': len(data.ids), 'items': len(data.vocab.items),"
    " 'seconds': seconds, 'peak_mb': peak_mb}))\n"
)


def case_parse(args) -> None:
    """read_t1 wall time and peak RSS on a synthetic TTL-sized T1 file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "original_desen_pretrain.csv"
        generated = _run_python(_GENERATE, path, args.lines, args.items, args.seed)
        print(f"generated in {generated['seconds']:.1f} s", file=sys.stderr, flush=True)
        size_mb = path.stat().st_size / 2**20
        run = _run_python(_READ_T1, path)
    _print_table({"lines": f"{run['lines']:,}", "distinct items": f"{run['items']:,}",
                  "file size MB": f"{size_mb:,.1f}", "parse wall s": f"{run['seconds']:.1f}",
                  "lines/s": f"{run['lines'] / run['seconds']:,.0f}",
                  "peak RSS MB": f"{run['peak_mb']:,.0f}"})


def _print_table(row: dict) -> None:
    widths = [max(len(k), len(v)) for k, v in row.items()]
    print("  ".join(k.rjust(w) for k, w in zip(row, widths)))
    print("  ".join(v.rjust(w) for v, w in zip(row.values(), widths)))


# ---------------------------------------------------------------------------------------

CASES = {
    "parse": case_parse,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases:\n" + "\n".join(f"  {name:8} {case.__doc__.strip()}"
                                       for name, case in CASES.items()))
    parser.add_argument("--case", required=True, choices=sorted(CASES), help="benchmark to run")
    parser.add_argument("--seed", type=int, default=0, help="random seed of generated data")
    parse = parser.add_argument_group("parse")
    parse.add_argument("--lines", type=int, default=1_450_000,
                       help="T1 lines to generate (default: TTL's 1.45M)")
    parse.add_argument("--items", type=int, default=645_974,
                       help="distinct items (default: TTL's 645,974)")
    args = parser.parse_args(argv)
    CASES[args.case](args)


if __name__ == "__main__":
    main()
