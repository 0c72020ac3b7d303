"""Benchmarks. Each case is a function in CASES; run one with --case=NAME.

    python tools/bench.py --scale=small             # training and evaluation (the default case, "train")
    python tools/bench.py --scale=ttl --steps=2     # full TTL scale (645,974 items): a few steps on a CPU
    python tools/bench.py --case=profile --scale=sample  # T1's step part by part against the matmul peak
    python tools/bench.py --case=peak --scale=sample     # every matmul of the peak's sweep, fastest first
    python tools/bench.py --case=memory --scale=ttl # the memory model at batch 32 and 256, nothing run
    python tools/bench.py --case=parse [--lines=1450000 --items=645974 --seed=0]
    python tools/bench.py --case=predict [--scale=small|sample|ttl]   # users/s per task, export sizes

The "train" case times real training steps of Conure stages and evaluation on generated data of the
chosen scale, and the device's matmul peak in the same run (tools/peak.py: the best of a sweep of
shapes, timed again between each row's steps), and prints one table: steps/s, the time split of a
step (data, forward/backward, optimizer), peak memory against memory_model(), achieved TFLOP/s and
its share of the matmul peak. Every comparison in it (plain vs item-chunked
softmax, float32 vs mixed bfloat16, XLA on/off and Adam's table updates on TensorFlow, real batches
vs one constant batch) is measured in that same run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python tools/bench.py` imports the project's modules from the root

from tools import peak  # noqa: E402
from tools import step_profile  # noqa: E402

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
    """Run script in a fresh interpreter (cwd: the project's root) and parse the JSON it prints last."""
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


# Generation runs in its own interpreter too: a child started by fork/exec inherits its
# parent's peak RSS in ru_maxrss, so a parent that had generated the file would inflate it.
_GENERATE = (
    "import json, sys, time\n"
    "from pathlib import Path\n"
    "from tools import bench\n"
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

# ---------------------------------------------------------------------------------------
# train: steps/s, the time split of a step, memory, achieved TFLOP/s against a measured matmul peak
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One measured training configuration. `loss`: sampled, full (one logit matrix), chunked
    (item-chunked full softmax) or bpr (T2)."""
    name: str
    task: int = 1
    loss: str = "sampled"
    precision: str = "float32"
    constant: bool = False      # one batch over and over: the step without the input path
    xla: bool | None = None     # None: the stage default
    table_update: str = "dense"  # trainer.TABLE_UPDATES
    tensorflow_only: bool = False
    sampled_sums: str = "concat"  # losses.SAMPLED_SUMS
    conv_op: str = "matmul"       # nextitnet.CONV_OPS


ROWS = [
    Row("T1 sampled softmax"),
    Row("T1 sampled, split sums", sampled_sums="split"),
    Row("T1 sampled, conv op", conv_op="conv"),
    Row("T1 sampled, split sums, conv op", sampled_sums="split", conv_op="conv"),
    Row("T1 sampled, constant batch", constant=True),
    Row("T1 sampled", precision="mixed_bfloat16"),
    Row("T1 sampled, XLA off", xla=False, tensorflow_only=True),
    Row("T1 sampled, Adam rows sparse", table_update="sparse", tensorflow_only=True),
    Row("T1 sampled, lazy Adam (deviation)", table_update="lazy", tensorflow_only=True),
    Row("T1 full softmax, plain", loss="full"),
    Row("T1 full softmax, chunked", loss="chunked"),
    Row("T2 BPR", task=2, loss="bpr"),
]
SCALES = {  # generated data and model of each scale; "rows": the ROWS it runs (default: all); "isolate":
    # each row in its own interpreter
    "small": {"items": 20_000, "users": 4_000, "channels": 128, "dilations": [1, 4, 1, 4], "batch": 32, "steps": 8},
    "sample": {"items": 123_729, "users": 10_000, "channels": 256, "dilations": [1, 4] * 4, "batch": 32, "steps": 8},
    "ttl": {"items": 645_974, "users": 20_000, "channels": 256, "dilations": [1, 4] * 4, "batch": 32, "steps": 30,
            "rows": ("T1 sampled softmax", "T1 sampled, split sums", "T1 sampled, split sums, conv op",
                     "T1 sampled, Adam rows sparse", "T1 sampled, lazy Adam (deviation)",
                     "T1 full softmax, chunked"), "isolate": True},
}
TTL_TRAIN_USERS = int(1_450_000 * 0.8)
T2_TARGETS = 17_880
SEQ_POSITIONS = SEQ_LEN  # T1 positions per line
DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16"}  # a row's precision: its matmuls' dtype


def default(key):
    """A stage setting's default (settings.DEFAULTS, the chain's in CHAIN_DEFAULTS), imported when first needed."""
    import settings

    return {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS}[key]


def conv_flops(positions, channels, dilations, kernel_size=None):
    """Forward FLOPs of the residual stack: two convs per block, 2*k*C*C per position each."""
    return 2 * len(dilations) * 2 * (kernel_size or default("kernel_size")) * channels * channels * positions


def user_positions(scale, tokens):
    """Positions the backbone computes for a user representation: only the receptive field of the
    last position (ConureModel.user), at most the `tokens` given."""
    import nextitnet

    return min(tokens, nextitnet.receptive_field(default("kernel_size"), scale["dilations"]))


def softmax_chunk(scale):
    """The chunk of the item-chunked rows: the stage default, at least 4 chunks on small tables."""
    import settings

    return min(settings.DEFAULTS["softmax_chunk"], max(scale["items"] // 4, 1))


def head_classes(row, scale):
    """Columns of one softmax matmul of a T1 row: the sampled negatives, every item, or one chunk."""
    return {"sampled": int(default("num_sampled_ratio") * scale["items"]), "full": scale["items"],
            "chunked": softmax_chunk(scale)}[row.loss]


def row_flops(row, scale, batch):
    """Forward matmul FLOPs of one step: the convolutions, and T1's softmax over every item (or the
    sampled ones). T2's user representation needs the receptive field only."""
    if row.task == 2:
        return conv_flops(batch * user_positions(scale, SEQ_POSITIONS + 1), scale["channels"], scale["dilations"])
    positions = batch * SEQ_POSITIONS
    classes = head_classes(row, scale) if row.loss == "sampled" else scale["items"]
    return conv_flops(positions, scale["channels"], scale["dilations"]) + 2 * positions * classes * scale["channels"]


def row_matmuls(row, scale, batch):
    """(m, k, n) of a row's largest matmuls, for the peak's sweep: the convolution as one matmul
    over the kernel's taps, and T1's softmax."""
    channels = scale["channels"]
    if row.task == 2:
        return [(batch * user_positions(scale, SEQ_POSITIONS + 1), 3 * channels, channels)]
    positions = batch * SEQ_POSITIONS
    return [(positions, 3 * channels, channels), (positions, channels, head_classes(row, scale))]


def eval_flops_per_user(scale):
    """Forward FLOPs of ranking one held-out T1 user: the receptive field of the last of its
    SEQ_POSITIONS inputs, then a score for every item."""
    positions = user_positions(scale, SEQ_POSITIONS)
    return conv_flops(positions, scale["channels"], scale["dilations"]) + 2 * scale["items"] * scale["channels"]


def eval_matmuls(scale):
    """(m, k, n) of evaluation's largest matmuls: one block of users' convolution, its scores."""
    import settings

    users, channels = settings.EVAL_BLOCK, scale["channels"]
    columns = min(scale["items"], default("eval_chunk"))
    return [(users * user_positions(scale, SEQ_POSITIONS), 3 * channels, channels), (users, channels, columns)]


# ----------------------------------------------------------------------------- memory model

def memory_model(scale, row, batch, chunk=None):
    """Bytes a training step holds, by part: an estimate checked against measured peaks. float32
    variables; the T1 head's table is as large as the embedding."""
    items, channels, blocks, kernel = scale["items"], scale["channels"], len(scale["dilations"]), default("kernel_size")
    table = items * channels
    convs = 2 * blocks * kernel * channels * channels
    norms = 2 * blocks * 2 * channels
    trainable = 2 * table + items + convs + norms if row.task == 1 else convs + T2_TARGETS * channels
    frozen = convs + (0 if row.task == 1 else 2 * table + items + norms)  # owner maps (int32), frozen T1 parts
    positions = batch * SEQ_POSITIONS
    dtype_bytes = 2 if row.precision == "mixed_bfloat16" else 4
    backbone = 13 * blocks * positions * channels * dtype_bytes  # saved per block: norms, relus, 2x3 taps, convs
    sampled = int(default("num_sampled_ratio") * items)
    head = {"sampled": 4 * positions * sampled * 4 + 2 * sampled * channels * 4,  # logits, with the true one, exp, grad
            "full": 3 * positions * items * 4,
            "chunked": 4 * positions * (chunk or softmax_chunk(scale)) * 4 + 2 * table * 4,  # two chunks' logits
            "bpr": 0}[row.loss]
    return {"parameters": 4 * (trainable + frozen), "adam": 2 * 4 * trainable,
            "gradients": 4 * trainable,  # dense: JAX always, TensorFlow's default table_update
            "activations": backbone + head}


def case_memory(args) -> None:
    """The memory model at a scale, for batch 32 and 256 (or --batch), T1 sampled and item-chunked."""
    scale = SCALES[args.scale]
    print(f"memory model, scale {args.scale}: {scale['items']:,} items, {scale['channels']} channels, "
          f"{len(scale['dilations'])} blocks; GiB")
    lines = []
    for batch in ([args.batch] if args.batch else [32, 256]):
        for row in (ROWS[0], next(r for r in ROWS if r.loss == "chunked")):
            parts = memory_model(scale, row, batch, chunk=softmax_chunk(scale))
            lines.append({"case": row.name, "batch": str(batch),
                          **{k: f"{v / 2**30:.2f}" for k, v in parts.items()},
                          "total": f"{sum(parts.values()) / 2**30:.2f}",
                          "tables' share": f"{_table_share(scale, parts):.0%}"})
    _print_rows(lines)


def _table_share(scale, parts):
    """Share of the total held by the two item tables' parameters, Adam state and gradients
    (what sharding them over devices divides)."""
    table_bytes = 2 * scale["items"] * scale["channels"] * 4 * 4  # two tables x (parameter, 2 moments, gradient)
    return table_bytes / sum(parts.values())


def resident_mb():
    """(current, peak since the last reset_peak_memory) resident memory of this process, MB (Linux)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak_memory():
    with open("/proc/self/clear_refs", "w") as clear:  # "5": reset the peak resident size (Linux)
        clear.write("5")


def peak_memory_mb():
    """Peak memory of the device: the JAX accelerator's peak bytes in use, else this process's peak RSS."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20
    return resident_mb()[1]


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- data and timing

def _zipf_lines(rng, n_lines, n_items, seq_len=101):
    """Left-padded id lines over ids 3..n_items-1 with Zipf-like popularity (TTL-like lengths)."""
    lengths = _line_lengths(rng, n_lines)
    ranks = np.minimum(rng.zipf(1.3, size=(n_lines, seq_len)), n_items - 3) + 2
    ids = np.where(np.arange(seq_len) >= seq_len - np.minimum(lengths, seq_len)[:, None], ranks, 0)
    return ids.astype(np.int32)


def bench_data(scale, rng):
    """T1 and T2 task data of the scale, built directly from generated id matrices."""
    import data_loader

    vocab = data_loader.Vocab([str(i) for i in range(scale["items"] - data_loader.N_RESERVED)],
                              np.ones(scale["items"] - data_loader.N_RESERVED, dtype=np.int64))
    ids = _zipf_lines(rng, scale["users"], scale["items"])
    t1 = data_loader.T1Task(data_loader.T1Data(ids, vocab), 10, 0.2, "generated")
    targets = rng.integers(0, T2_TARGETS, size=scale["users"]).astype(np.int32)
    transfer = data_loader.TransferData(ids[:, 1:], 0, np.arange(scale["users"]), targets,
                                        [str(i) for i in range(T2_TARGETS)])
    return t1, data_loader.TransferTask(transfer, "item", 10, 0.2, "generated")


def time_steps(step, data, config, steps, constant, probe):
    """(steps per second over the timed steps, the fastest step's seconds, the fastest rate of
    `probe` (a peak.Probe) timed after each step), after two compile and warm-up steps. Shares of
    the peak set the fastest step against the probe's best in the same minutes: a shared machine's
    speed can change within a run."""
    import data_loader

    batches = data_loader.prefetched(data.train_batches(config, epoch=0))
    first = next(batches)
    for _ in range(2):
        step(first)
    seconds, probed = [], []
    for _ in range(steps):
        seconds.append(_timed(lambda: step(first if constant else next(batches))))
        probed.append(probe())
    return steps / sum(seconds), min(seconds), max(probed)


def time_split(step, data, config, steps):
    """Seconds per step of its parts, each run on its own: making a batch on the host (overlapped
    with the step in training), forward and backward (the gradients), the optimizer update."""
    batches = iter(data.train_batches(config, epoch=1))
    start = time.perf_counter()
    made = [next(batches) for _ in range(steps)]
    data_s = (time.perf_counter() - start) / steps
    gradients, apply = step.split()
    grads = gradients(made[0])  # compile
    apply(grads)
    start = time.perf_counter()
    for batch in made:
        grads = gradients(batch)
    backward_s = (time.perf_counter() - start) / steps
    optimizer_s = min(_timed(lambda: apply(grads)) for _ in range(steps))
    return {"data": data_s, "forward/backward": backward_s, "optimizer": optimizer_s}


def time_eval(model, data, config, steps, probe, repeats=3):
    """(held-out users per second of evaluate.score over `steps` batches, the fastest of `repeats`;
    the best rate of `probe` timed after each)."""
    import evaluate

    tokens, truth = data.test_inputs()
    capped = {**config, "eval_cap": config["eval_batch_size"] * steps}
    evaluate.score(model, 1, data, {**capped, "eval_cap": config["eval_batch_size"]})  # compile
    seconds, probed = [], []
    for _ in range(repeats):
        seconds.append(_timed(lambda: evaluate.score(model, 1, data, capped)))
        probed.append(probe())
    return min(len(tokens), capped["eval_cap"]) / min(seconds), max(probed)


def build_row(row, scale, seed):
    """(model, its trainer.TrainStep, task data, config, xla) of a row, freshly built."""
    import trainer  # noqa: I001  first: it silences TensorFlow's start-up messages

    import keras

    import assembly
    import settings

    t1, t2 = bench_data(scale, np.random.default_rng(seed))
    chunk = softmax_chunk(scale) if row.loss == "chunked" else 0
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "channels": scale["channels"],
              "dilations": scale["dilations"], "batch_size": scale["batch"], "exclude_padding": False,
              "precision": row.precision, "softmax_chunk": chunk, "full_softmax": row.loss in ("full", "chunked")}
    xla = (keras.backend.backend() == "tensorflow" and settings.DEFAULTS["xla"]) if row.xla is None else row.xla
    model = assembly.build_model(t1.vocab.size, config, [
        {"task": 1, "n_targets": t1.n_targets, "l2": 0.0}, {"task": 2, "n_targets": T2_TARGETS, "l2": 0.02}][:row.task])
    model.softmax_chunk, model.sampled_sums = chunk, row.sampled_sums
    for conv in model.backbone.convs:
        conv.op = row.conv_op
    model.set_trainable(row.task, shared=row.task == 1)
    step = trainer.TrainStep(lambda b: model.task_loss(b, row.task, "train"), model.trainable_variables,
                             model.variables, trainer.adam(settings.DEFAULTS["learning_rate"]), xla=xla,
                             table_update=row.table_update)
    return model, step, t1 if row.task == 1 else t2, config, xla


def measure_row(row, scale, seed, peak_spec):
    """One row's raw figures: steps/s, achieved TFLOP/s and the peak probe's in the same minutes
    (`peak_spec`: the sweep's winning shape, dtype and engine), time split, memory (this process's)."""
    import gc

    import trainer  # noqa: F401, I001  first: it silences TensorFlow's start-up messages

    import keras

    batch, steps = scale["batch"], scale["steps"]
    keras.backend.clear_session()
    gc.collect()
    probe = peak.Probe(*peak_spec)
    reset_peak_memory()
    start_mb = resident_mb()[0]
    model, step, data, config, xla = build_row(row, scale, seed)
    rate, fastest, probed = time_steps(step, data, config, steps, row.constant, probe)
    split = time_split(step, data, config, steps)
    chunk = config["softmax_chunk"]
    return {"case": row.name, "backend": _backend_label(xla), "rate": rate, "fastest_s": fastest,
            "tflops": 3 * row_flops(row, scale, batch) / fastest / 1e12,  # forward + backward ~ 3x the forward matmuls
            "peak_tflops": probed, "split": split, "start_mb": start_mb, "peak_mb": peak_memory_mb(),
            "model_mb": sum(memory_model(scale, row, batch, chunk).values()) / 2**20}


def case_profile(args) -> None:
    """T1's sampled step (--row, default the first) part by part against the matmul peak."""
    scale = {**SCALES[args.scale], **{k: v for k, v in (("batch", args.batch),) if v}}
    row = next(r for r in ROWS if r.name == (args.row or [ROWS[0].name])[0])
    if row.task != 1 or row.loss != "sampled":
        raise SystemExit(f"--case=profile takes a T1 sampled-softmax row, not {row.name!r}")
    model, step, data, config, xla = build_row(row, scale, args.seed)
    device = _device_name()
    sweep = peak.measure("float32", row_matmuls(row, scale, scale["batch"]))
    rows, best = step_profile.profile(model, step, data, config, xla, sweep)
    print(f"{row.name} at scale {args.scale} ({scale['items']:,} items, {scale['channels']} channels, "
          f"{len(scale['dilations'])} blocks, batch {scale['batch']}), {device}, {_backend_label(xla)}; "
          f"each part compiled on its own, best of {step_profile.ROUNDS} interleaved rounds")
    _print_rows(rows)
    print(f"\nmatmul peak: float32 {best.describe()}, timed once a round (the sweep's best: {sweep.tflops:.3f}); "
          "lost ms: the part's time less its matmul FLOPs at the peak")
    print(f"holds the step back: {step_profile.holding_back(rows)}")


def case_peak(args) -> None:
    """Every matmul of the peak's sweep at a scale (its rows' shapes and evaluation's), float32."""
    import trainer  # noqa: F401  first: it silences TensorFlow's start-up messages

    shapes = eval_matmuls(SCALES[args.scale])
    for row in ROWS:
        shapes += row_matmuls(row, SCALES[args.scale], SCALES[args.scale]["batch"])
    rates = peak.sweep("float32", shapes)
    print(f"float32 matmuls on {_device_name()}, best of 5 runs each (m x k times k x n), fastest first:")
    _print_rows([{"m": str(m), "k": str(k), "n": str(n), "engine": engine, "TFLOP/s": f"{tflops:.3f}"}
                 for ((m, k, n), engine), tflops in sorted(rates.items(), key=lambda item: -item[1])])


def _backend_label(xla):
    import keras

    return keras.backend.backend() + (" +XLA" if xla else "")


_MEASURE_ROW = (
    "import json, sys\n"
    "from tools import bench\n"
    "row = next(r for r in bench.ROWS if r.name == sys.argv[1])\n"
    "print(json.dumps(bench.measure_row(row, json.loads(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]))))\n"
)


def case_train(args) -> None:
    """steps/s, time split, memory and achieved TFLOP/s of Conure stages and evaluation vs the matmul peak."""
    scale = {**SCALES[args.scale], **{k: v for k, v in (("batch", args.batch), ("steps", args.steps)) if v}}
    wanted = args.row or scale.get("rows", [r.name for r in ROWS])
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    rows = [r for r in ROWS if r.name in wanted and not (r.tensorflow_only and backend != "tensorflow")]
    isolate = args.isolate or scale.get("isolate")
    peaks = measure_peaks(rows, scale)
    specs = {precision: (best.shape, DTYPES[precision], best.engine) for precision, best in peaks.items()}
    measured = []
    for row in rows:
        if isolate:  # each row in a fresh interpreter: its own peak memory
            print(f"measuring {row.name} ...", file=sys.stderr, flush=True)
            measured.append(_run_python(_MEASURE_ROW, row.name, json.dumps(scale), args.seed,
                                        json.dumps(specs[row.precision])))
        else:
            measured.append(measure_row(row, scale, args.seed, specs[row.precision]))
    eval_rate, eval_peak = measure_eval(scale, args.seed, peak.Probe(*specs["float32"]))
    device = _device_name()
    _print_rows([train_row(row, m, scale, device, peaks[row.precision]) for row, m in zip(rows, measured)])
    print_peaks(peaks, device)
    print("peak TFLOP/s: the sweep's winning matmul timed again after each of the row's steps, its best; of peak: "
          "the fastest step's TFLOP/s against it.\ntime split: each part run on its own, one batch at a time (a real "
          "step overlaps the data with the step and fuses the rest).\nmodel MB: memory_model()'s estimate, to set "
          "against peak MB - start MB" + (" (each row ran in its own interpreter)" if isolate else
                                          " (rows share this process: start MB holds what earlier rows left; "
                                          "--isolate avoids it)"))
    eval_tflops = eval_flops_per_user(scale) * eval_rate / 1e12
    mode = "item-chunked ranking" if scale["items"] > default("eval_chunk") else "score matrix"
    share = peak.share_of_peak(eval_tflops, peak.Peak(eval_peak, peaks["float32"].shape, peaks["float32"].engine))
    print(f"\nT1 evaluation ({mode}, batch 256): {eval_rate:,.0f} users/s, {eval_tflops:.3f} TFLOP/s ({share} of "
          f"the float32 peak probe, {eval_peak:.3f} TFLOP/s in the same minutes); 290k held-out users at this "
          f"scale's rate: {_minutes(290_000 / eval_rate)}")


def train_row(row, measured, scale, device, sweep):
    """One printed row of the train table; raises peak.AbovePeakError if the row beats the peak (the
    sweep's winning matmul, timed in the row's minutes)."""
    m, batch = measured, scale["batch"]
    row_peak = peak.Peak(m["peak_tflops"], sweep.shape, sweep.engine)
    try:
        share = peak.share_of_peak(m["tflops"], row_peak)
    except peak.AbovePeakError as error:
        raise peak.AbovePeakError(f"{row.name}: {error}") from None
    return {"case": row.name, "backend": m["backend"], "device": device, "dtype": row.precision,
            "batch": str(batch), "steps/s": _rate(m["rate"]), "seq/s": _rate(m["rate"] * batch),
            **{f"{part} ms": f"{seconds * 1e3:,.0f}" for part, seconds in m["split"].items()},
            "step ms": f"{1e3 / m['rate']:,.0f}", "fastest ms": f"{m['fastest_s'] * 1e3:,.0f}",
            "TFLOP/s": f"{m['tflops']:.3f}",
            "peak TFLOP/s": f"{row_peak.tflops:.3f}", "of peak": share,
            "TTL epoch": _minutes(TTL_TRAIN_USERS / batch / m["rate"]) if row.task == 1 else "-",
            "start MB": f"{m['start_mb']:,.0f}", "peak MB": f"{m['peak_mb']:,.0f}",
            "model MB": f"{m['model_mb']:,.0f}"}


def measure_peaks(rows, scale):
    """{precision: peak.Peak} for float32 (evaluation's) and each row's precision, each swept over
    the squares and the largest matmuls of the rows of that precision (and evaluation's)."""
    shapes = {"float32": eval_matmuls(scale)}
    for row in rows:
        shapes.setdefault(row.precision, []).extend(row_matmuls(row, scale, scale["batch"]))
    return {precision: peak.measure(DTYPES[precision], row_shapes) for precision, row_shapes in shapes.items()}


def print_peaks(peaks, device):
    """The peak of each precision with the shape and engine that won, and the data-sheet ceiling."""
    ceiling, source = peak.device_ceiling(device)
    print(f"\nmatmul peak on {device}, the best of {len(peak.SQUARES)} squares from {peak.SQUARES[0]} to "
          f"{peak.SQUARES[-1]} and the rows' own matmuls (forward and backward shapes), on {', '.join(peak.engines())}:")
    for precision, best in peaks.items():
        index = 0 if precision == "float32" else 1
        limit = f"; data-sheet ceiling {ceiling[index]:.3f} TFLOP/s" if ceiling else ""
        note = peak.ceiling_note(best, ceiling[index] if ceiling else None, device)
        print(f"  {precision}: {best.describe()}{limit}" + (f" ({note})" if note else ""))
    print(f"  ceiling: {source}")


def measure_eval(scale, seed, probe):
    """(held-out users per second of T1's evaluation, item-chunked ranking at batch 256; the best
    rate of `probe` timed after each repeat)."""
    import assembly
    import settings

    t1, _ = bench_data(scale, np.random.default_rng(seed))
    cfg = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "channels": scale["channels"],
           "dilations": scale["dilations"], "eval_batch_size": 256}
    model = assembly.build_model(t1.vocab.size, cfg, [{"task": 1, "n_targets": t1.n_targets, "l2": 0.0}])
    return time_eval(model, t1, cfg, max(1, scale["steps"] // 4), probe)


def _device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind if device.platform != "cpu" else f"CPU x{os.cpu_count()}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else \
        f"CPU x{os.cpu_count()}"


def _rate(per_second):
    return f"{per_second:.3g}" if per_second < 100 else f"{per_second:,.0f}"


def _minutes(seconds):
    return f"{seconds / 60:,.1f} min"


def _print_rows(rows):
    widths = {k: max(len(k), *(len(r[k]) if isinstance(r[k], str) else len(str(r[k])) for r in rows)) for k in rows[0]}
    print("  ".join(k.ljust(w) for k, w in widths.items()))
    for row in rows:
        print("  ".join(str(row[k]).ljust(w) for k, w in widths.items()))


# ---------------------------------------------------------------------------------------
# predict: users/s per task through predict.py and the SavedModel; export sizes
# ---------------------------------------------------------------------------------------

RELEASE_TARGETS = {2: 17_880, 3: 7_540, 4: 3, 5: 9, 6: 7}  # docs/design.md section 2: T2-T6 target spaces
PREDICT_BATCH = 256


def generated_served(scale, numbers, view, rng):
    """predict.Served of a model of the scale's size holding `numbers`, with generated tokens; Conure's
    owner maps give each task the release's share of every kernel (prune ratio 0.7)."""
    import assembly
    import data_loader
    import predict
    import settings
    import tasks

    vocab = data_loader.Vocab([str(i) for i in range(1, scale["items"] - data_loader.N_RESERVED + 1)],
                              np.ones(scale["items"] - data_loader.N_RESERVED, dtype=np.int64))
    sizes = {1: vocab.size, **RELEASE_TARGETS}
    targets = {n: data_loader.TargetVocab([f"{n}:{i}" for i in range(sizes[n])], np.ones(sizes[n], dtype=np.int64))
               for n in numbers if n > 1}
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "channels": scale["channels"],
              "dilations": scale["dilations"]}
    model = assembly.build_model(vocab.size, config, [{"task": n, "n_targets": sizes[n], "l2": 0.0} for n in numbers])
    shares = [0.7 ** 6] + [0.7 ** (k - 1) * 0.3 for k in range(1, 7)]  # free, then T1..T6
    for conv in model.backbone.convs:
        conv.owner.assign(rng.choice(7, size=conv.owner.shape, p=shares).astype(np.int8))
    served_tasks = [(n, tasks.task(n).name, tasks.task(n).kind) for n in numbers]
    return predict.Served(model, vocab, targets, served_tasks, view, "generated")


def users_per_second(call, batches, repeats=3):
    """Users per second of `call` over `batches`: the fastest of `repeats` passes after a compile."""
    call(batches[0])  # compile
    seconds = min(_timed(lambda: [call(batch) for batch in batches]) for _ in range(repeats))
    return len(batches) * len(batches[0]) / seconds


def predict_row(scale, served, number, rate, best, probe):
    """A task's row: predict.py's users/s, TFLOP/s and share of `best`'s matmul `probe`d just after."""
    same_minutes = peak.Peak(max(probe() for _ in range(3)), best.shape, best.engine)
    tflops = predict_flops_per_user(scale, number, served.n_answers(number)) * rate / 1e12
    name = next(name for n, name, _ in served.tasks if n == number)
    return {"task": f"T{number} {name}", "answers": f"{served.n_answers(number):,}",
            "predict.py users/s": f"{rate:,.0f}", "TFLOP/s": f"{tflops:.3f}",
            "peak TFLOP/s": f"{same_minutes.tflops:.3f}", "of peak": peak.share_of_peak(tflops, same_minutes)}


def predict_flops_per_user(scale, number, answers):
    """Forward FLOPs of one user's answers to task `number`: the receptive field of its last input
    (T2+ read one more token, the separator), then a score per answer."""
    positions = user_positions(scale, SEQ_LEN + (number > 1))
    return conv_flops(positions, scale["channels"], scale["dilations"]) + 2 * answers * scale["channels"]


def predict_matmuls(scale, served):
    """(m, k, n) of serving's largest matmuls: a batch's convolution and T1's scores."""
    channels = scale["channels"]
    return [(PREDICT_BATCH * user_positions(scale, SEQ_LEN + 1), 3 * channels, channels),
            (PREDICT_BATCH, channels, served.n_answers(1))]


def case_predict(args) -> None:
    """users/s of every task (predict.py's path and the exported SavedModel) and export sizes."""
    import dataclasses

    import trainer  # noqa: F401, I001  first: it silences TensorFlow's start-up messages

    import keras

    import export
    import predict

    scale = SCALES[args.scale]
    rng = np.random.default_rng(args.seed)
    numbers = list(range(1, 7))
    conure = generated_served(scale, numbers, "infer", rng)
    batches = np.split(_zipf_lines(rng, PREDICT_BATCH * (args.steps or 4), scale["items"], seq_len=SEQ_LEN),
                       args.steps or 4)
    token_of = np.asarray(["0", "<unk>", "<sep>"] + conure.vocab.items)
    saved_model = keras.backend.backend() == "tensorflow"
    print(f"{_device_name()}, {keras.backend.backend()}; {scale['items']:,} items, {scale['channels']} channels, "
          f"{len(scale['dilations'])} blocks; batches of {PREDICT_BATCH} users of {SEQ_LEN} tokens", flush=True)
    rows, sizes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if saved_model:
            import tensorflow as tf

            export.export(conure, tmp / "conure", k=10)
            sizes["Conure"] = export.size_bytes(tmp / "conure")
            loaded = tf.saved_model.load(str(tmp / "conure"))
        best = peak.measure("float32", predict_matmuls(scale, conure))
        probe = peak.Probe.of(best, "float32")
        for number, name, kind in conure.tasks:
            one = predict.Predictor(dataclasses.replace(conure, tasks=[(number, name, kind)]), batch_size=PREDICT_BATCH)
            rows.append(predict_row(scale, conure, number, users_per_second(one.answer, batches), best, probe))
            if saved_model:
                serve = loaded.signatures[name]
                rate = users_per_second(lambda batch: serve(tokens=tf.constant(token_of[batch])), batches)
                rows[-1]["SavedModel users/s"] = f"{rate:,.0f}"
        with open(tmp / "users.csv", "w") as f:
            f.writelines(",".join(line) + "\n" for batch in batches for line in token_of[batch])
        done = predict.write_answers(conure, tmp / "users.csv", tmp / "answers.jsonl", log=lambda *a: None)
        rows.append({"task": "all six, file to JSON lines", "answers": "",
                     "predict.py users/s": f"{done['users'] / done['seconds']:,.0f}", "TFLOP/s": "-",
                     "peak TFLOP/s": "-", "of peak": "-",
                     **({"SavedModel users/s": "-"} if saved_model else {})})
        _print_rows(rows)
        print(f"\nmatmul peak: float32 {best.describe()}; peak TFLOP/s: its shape timed again after each task; "
              "TFLOP/s counts the receptive field's convolutions and one score per answer")
        if not saved_model:
            print("\nExport sizes: run on the TensorFlow backend (a SavedModel is a TensorFlow graph).")
            return
        for number in numbers:  # FineAll: a whole model of the same width per task
            export.export(generated_served(scale, [number], "full", rng), tmp / f"finall_t{number}", k=10)
            sizes[f"T{number}"] = export.size_bytes(tmp / f"finall_t{number}")
            shutil.rmtree(tmp / f"finall_t{number}")
    finall = sum(size for name, size in sizes.items() if name != "Conure")
    print(f"\nSavedModel sizes: Conure, one model for T1-T6, {_mib(sizes['Conure'])}; six FineAll models, "
          f"{_mib(finall)} (" + ", ".join(f"T{n} {_mib(sizes[f'T{n}'])}" for n in numbers)
          + f"); FineAll / Conure = {finall / sizes['Conure']:.2f}")


def _mib(size):
    return f"{size / 2**20:,.1f} MiB"


CASES = {
    "train": case_train,
    "profile": case_profile,
    "peak": case_peak,
    "parse": case_parse,
    "predict": case_predict,
    "memory": case_memory,
}


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cases:\n" + "\n".join(f"  {name:8} {case.__doc__.strip()}"
                                       for name, case in CASES.items()))
    parser.add_argument("--case", default="train", choices=sorted(CASES), help="benchmark to run (default: train)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of generated data")
    train = parser.add_argument_group("train")
    train.add_argument("--scale", choices=sorted(SCALES), default="small",
                       help="small: seconds on a CPU; sample: the TTL sample at default size; ttl: full TTL")
    train.add_argument("--batch", type=int, default=None, help="training batch (default: the scale's, 32)")
    train.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    train.add_argument("--isolate", action="store_true",
                       help="run each row in its own interpreter (the default at --scale=ttl)")
    train.add_argument("--row", action="append", choices=[r.name for r in ROWS], metavar="NAME",
                       help="measure only this row (repeatable; default: the scale's rows)")
    parser.add_argument_group("predict", f"uses --scale and --steps (batches of {PREDICT_BATCH} users timed per task, "
                                         "default 4)")
    parse = parser.add_argument_group("parse")
    parse.add_argument("--lines", type=int, default=1_450_000,
                       help="T1 lines to generate (default: TTL's 1.45M)")
    parse.add_argument("--items", type=int, default=645_974,
                       help="distinct items (default: TTL's 645,974)")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    CASES[args.case](args)


if __name__ == "__main__":
    main()
