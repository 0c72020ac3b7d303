"""Benchmarks. Each case is a function in CASES; run one with --case=NAME.

    python tools/bench.py --scale=small             # training and evaluation (the default case, "train")
    python tools/bench.py --scale=ttl --steps=2     # full TTL scale (645,974 items): a few steps on a CPU
    python tools/bench.py --case=memory --scale=ttl # the memory model at batch 32 and 256, nothing run
    python tools/bench.py --case=parse [--lines=1450000 --items=645974 --seed=0]
    python tools/bench.py --case=predict [--scale=small|sample|ttl]   # users/s per task, export sizes

The "train" case times real training steps of Conure stages and evaluation on generated data of the
chosen scale, and a plain matmul on the same device in the same run, and prints one table: steps/s,
the time split of a step (data, forward/backward, optimizer), peak memory against memory_model(),
achieved TFLOP/s and its share of the matmul peak. Every comparison in it (plain vs item-chunked
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


ROWS = [
    Row("T1 sampled softmax"),
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
            "rows": ("T1 sampled softmax", "T1 sampled, Adam rows sparse", "T1 sampled, lazy Adam (deviation)",
                     "T1 full softmax, chunked"), "isolate": True},
}
TTL_TRAIN_USERS = int(1_450_000 * 0.8)
T2_TARGETS = 17_880
SEQ_POSITIONS = 100  # T1 positions per line


def conv_flops(positions, channels, dilations, kernel_size=3):
    """Forward FLOPs of the residual stack: two convs per block, 2*k*C*C per position each."""
    return 2 * len(dilations) * 2 * kernel_size * channels * channels * positions


def softmax_chunk(scale):
    """The chunk of the item-chunked rows: the stage default, at least 4 chunks on small tables."""
    import stage

    return min(stage.DEFAULTS["softmax_chunk"], max(scale["items"] // 4, 1))


def row_flops(row, scale, batch):
    positions = batch * SEQ_POSITIONS
    if row.task == 2:
        return conv_flops(batch * (SEQ_POSITIONS + 1), scale["channels"], scale["dilations"])
    classes = int(0.2 * scale["items"]) if row.loss == "sampled" else scale["items"]
    return conv_flops(positions, scale["channels"], scale["dilations"]) + 2 * positions * classes * scale["channels"]


# ----------------------------------------------------------------------------- memory model

def memory_model(scale, row, batch, chunk=None):
    """Bytes a training step holds, by part: an estimate checked against measured peaks. float32
    variables; the T1 head's table is as large as the embedding."""
    items, channels, blocks, kernel = scale["items"], scale["channels"], len(scale["dilations"]), 3
    table = items * channels
    convs = 2 * blocks * kernel * channels * channels
    norms = 2 * blocks * 2 * channels
    trainable = 2 * table + items + convs + norms if row.task == 1 else convs + T2_TARGETS * channels
    frozen = convs + (0 if row.task == 1 else 2 * table + items + norms)  # owner maps (int32), frozen T1 parts
    positions = batch * SEQ_POSITIONS
    dtype_bytes = 2 if row.precision == "mixed_bfloat16" else 4
    backbone = 13 * blocks * positions * channels * dtype_bytes  # saved per block: norms, relus, 2x3 taps, convs
    sampled = int(0.2 * items)
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


# ----------------------------------------------------------------------------- matmul peak

# Dense peaks of vendors' data sheets, TFLOP/s: float32, TF32 (XLA may run float32 matmuls on
# TF32 tensor cores), bfloat16. Matched against the device name, first match wins.
DATA_SHEET_TFLOPS = {
    "H100 PCIe": (51.2, 378.0, 756.0),
    "H100": (66.9, 494.7, 989.4),
    "H200": (66.9, 494.7, 989.4),
    "A100": (19.5, 156.0, 312.0),
    "L4": (30.3, 60.0, 121.0),
}


def matmul_peak(dtype, n=4096, repeats=5):
    """TFLOP/s of a plain n x n x n matmul on this device: compiled on its own (nothing fused into
    it), its result materialised in device memory and waited for; best of `repeats`."""
    import keras

    a = keras.random.normal((n, n), dtype=dtype, seed=0)
    b = keras.random.normal((n, n), dtype=dtype, seed=1)
    if keras.backend.backend() == "jax":
        import jax

        multiply = jax.jit(jax.numpy.matmul)
        run = lambda: multiply(a, b).block_until_ready()  # noqa: E731
    else:
        import tensorflow as tf

        multiply = tf.function(tf.linalg.matmul)
        run = lambda: multiply(a, b)[0, 0].numpy()  # noqa: E731  reading one element waits for all of it
    run()
    best = min(_timed(run) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e12


def device_ceiling(device):
    """(float32, bfloat16) TFLOP/s the device cannot exceed, and where the figure comes from: the
    data sheet of a known GPU, else for a CPU cores x clock x 2 FMA units x SIMD lanes x 2."""
    for name, (fp32, tf32, bf16) in DATA_SHEET_TFLOPS.items():
        if name in device:
            return (max(fp32, tf32), bf16), f"{name} data sheet (float32 {fp32}, TF32 {tf32}, bfloat16 {bf16})"
    if not device.startswith("CPU"):
        return None, "no data-sheet figure for this device"
    import trainer

    info = trainer.cpu_info()
    flags, mhz = info["flags"], info["mhz"]
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = len(mhz) * max(mhz) * 1e6 * 2 * lanes * 2 / 1e12
    bf16 = 2 * fp32 if "avx512_bf16" in flags else fp32
    return (fp32, bf16), (f"{len(mhz)} cores x {max(mhz):,.0f} MHz x 2 FMA x {lanes} float32 lanes x 2 "
                          "(an upper bound: some cores have one FMA unit, or half-width ones)")


def share_of_peak(achieved, peak):
    """"43%", or "n/a*" when the achieved rate is above the peak: then the peak or the FLOP count
    is wrong, and the table shows no share rather than an impossible one."""
    return f"{achieved / peak:.0%}" if achieved <= peak else "n/a*"


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


def time_steps(step, data, config, steps, constant):
    """Steps per second of real training steps (after two compile/warm-up steps)."""
    import data_loader

    batches = data_loader.prefetched(data.train_batches(config, epoch=0))
    first = next(batches)
    for _ in range(2):
        step(first)
    start = time.perf_counter()
    for _ in range(steps):
        step(first if constant else next(batches))
    return steps / (time.perf_counter() - start)


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


def time_eval(model, data, config, steps):
    import stage

    tokens, truth = data.test_inputs()
    capped = {**config, "eval_cap": config["eval_batch_size"] * steps}
    stage.evaluate(model, 1, data, {**capped, "eval_cap": config["eval_batch_size"]})  # compile
    seconds = _timed(lambda: stage.evaluate(model, 1, data, capped))
    return min(len(tokens), capped["eval_cap"]) / seconds


def measure_row(row, scale, seed):
    """One row's raw figures: steps/s, achieved TFLOP/s, time split, memory (this process's)."""
    import gc

    import keras

    import stage
    import trainer

    t1, t2 = bench_data(scale, np.random.default_rng(seed))
    batch, steps = scale["batch"], scale["steps"]
    backend = keras.backend.backend()
    chunk = softmax_chunk(scale) if row.loss == "chunked" else 0
    config = {**stage.DEFAULTS, **stage.CHAIN_DEFAULTS, "channels": scale["channels"], "dilations": scale["dilations"],
              "batch_size": batch, "exclude_padding": False, "precision": row.precision, "softmax_chunk": chunk,
              "full_softmax": row.loss in ("full", "chunked")}
    xla = (backend == "tensorflow" and stage.DEFAULTS["xla"]) if row.xla is None else row.xla
    keras.backend.clear_session()
    gc.collect()
    reset_peak_memory()
    start_mb = resident_mb()[0]
    model = stage.build_model(t1.vocab.size, config, [
        {"task": 1, "n_targets": t1.n_targets, "l2": 0.0}, {"task": 2, "n_targets": T2_TARGETS, "l2": 0.02}][:row.task])
    model.softmax_chunk = chunk
    model.set_trainable(row.task, shared=row.task == 1)
    step = trainer.TrainStep(lambda b: model.task_loss(b, row.task, "train"), model.trainable_variables,
                             model.variables, trainer.adam(1e-4), xla=xla, table_update=row.table_update)
    data = t1 if row.task == 1 else t2
    rate = time_steps(step, data, config, steps, row.constant)
    split = time_split(step, data, config, steps)
    return {"case": row.name, "backend": backend + (" +XLA" if xla else ""), "rate": rate,
            "tflops": 3 * row_flops(row, scale, batch) * rate / 1e12,  # forward + backward ~ 3x the forward matmuls
            "split": split, "start_mb": start_mb, "peak_mb": peak_memory_mb(),
            "model_mb": sum(memory_model(scale, row, batch, chunk).values()) / 2**20}


_MEASURE_ROW = (
    "import json, sys\n"
    "from tools import bench\n"
    "row = next(r for r in bench.ROWS if r.name == sys.argv[1])\n"
    "print(json.dumps(bench.measure_row(row, json.loads(sys.argv[2]), int(sys.argv[3]))))\n"
)


def case_train(args) -> None:
    """steps/s, time split, memory and achieved TFLOP/s of Conure stages and evaluation vs a measured matmul peak."""
    scale = {**SCALES[args.scale], **{k: v for k, v in (("batch", args.batch), ("steps", args.steps)) if v}}
    wanted = args.row or scale.get("rows", [r.name for r in ROWS])
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    rows = [r for r in ROWS if r.name in wanted and not (r.tensorflow_only and backend != "tensorflow")]
    if args.isolate or scale.get("isolate"):  # each row in a fresh interpreter: its own peak memory
        measured = []
        for row in rows:
            print(f"measuring {row.name} ...", file=sys.stderr, flush=True)
            measured.append(_run_python(_MEASURE_ROW, row.name, json.dumps(scale), args.seed))
    else:
        measured = [measure_row(row, scale, args.seed) for row in rows]

    import stage

    device = _device_name()
    peaks = {"float32": matmul_peak("float32"), "mixed_bfloat16": matmul_peak("bfloat16")}
    batch = scale["batch"]
    table = []
    for row, m in zip(rows, measured):
        peak = peaks[row.precision]
        table.append({"case": row.name, "backend": m["backend"], "device": device, "dtype": row.precision,
                      "batch": str(batch), "steps/s": _rate(m["rate"]), "seq/s": _rate(m["rate"] * batch),
                      **{f"{part} ms": f"{seconds * 1e3:,.0f}" for part, seconds in m["split"].items()},
                      "step ms": f"{1e3 / m['rate']:,.0f}", "TFLOP/s": f"{m['tflops']:.3f}",
                      "peak TFLOP/s": f"{peak:.3f}", "of peak": share_of_peak(m["tflops"], peak),
                      "TTL epoch": _minutes(TTL_TRAIN_USERS / batch / m["rate"]) if row.task == 1 else "-",
                      "start MB": f"{m['start_mb']:,.0f}", "peak MB": f"{m['peak_mb']:,.0f}",
                      "model MB": f"{m['model_mb']:,.0f}"})
    _print_rows(table)
    if any(r["of peak"] == "n/a*" for r in table):
        print("* above the measured matmul peak: the peak probe or the FLOP count is wrong, so no share is shown")
    ceiling, source = device_ceiling(device)
    print(f"\nmatmul probe: float32 {peaks['float32']:.3f}, bfloat16 {peaks['mixed_bfloat16']:.3f} TFLOP/s; "
          f"device ceiling: {source}" + (f": float32 {ceiling[0]:.3f}, bfloat16 {ceiling[1]:.3f}" if ceiling else ""))
    if ceiling and (peaks["float32"] > ceiling[0] or peaks["mixed_bfloat16"] > ceiling[1]):
        print("warning: the probe exceeds what the device can do; it does not measure a matmul")
    print("time split: each part run on its own, one batch at a time (a real step overlaps the data with the step "
          "and fuses the rest).\nmodel MB: memory_model()'s estimate, to set against peak MB - start MB"
          + (" (each row ran in its own interpreter)" if args.isolate or scale.get("isolate") else
             " (rows share this process: start MB holds what earlier rows left; --isolate avoids it)"))
    t1, _ = bench_data(scale, np.random.default_rng(args.seed))
    cfg = {**stage.DEFAULTS, **stage.CHAIN_DEFAULTS, "channels": scale["channels"], "dilations": scale["dilations"],
           "eval_batch_size": 256, "eval_chunk": 65536}
    model = stage.build_model(t1.vocab.size, cfg, [{"task": 1, "n_targets": t1.n_targets, "l2": 0.0}])
    rate = time_eval(model, t1, cfg, steps=max(1, scale["steps"] // 4))
    per_user = conv_flops(100, scale["channels"], scale["dilations"]) + 2 * scale["items"] * scale["channels"]
    eval_flops = per_user * rate
    print(f"\nT1 evaluation (item-chunked ranking, batch 256): {rate:,.0f} users/s, {eval_flops / 1e12:.3f} TFLOP/s "
          f"({share_of_peak(eval_flops / 1e12, peaks['float32'])} of the float32 peak); 290k held-out users at this "
          f"scale's rate: {_minutes(290_000 / rate)}")


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
    import data_loader
    import predict
    import stage
    import tasks

    vocab = data_loader.Vocab([str(i) for i in range(1, scale["items"] - data_loader.N_RESERVED + 1)],
                              np.ones(scale["items"] - data_loader.N_RESERVED, dtype=np.int64))
    sizes = {1: vocab.size, **RELEASE_TARGETS}
    targets = {n: data_loader.TargetVocab([f"{n}:{i}" for i in range(sizes[n])], np.ones(sizes[n], dtype=np.int64))
               for n in numbers if n > 1}
    config = {**stage.DEFAULTS, **stage.CHAIN_DEFAULTS, "channels": scale["channels"], "dilations": scale["dilations"]}
    model = stage.build_model(vocab.size, config, [{"task": n, "n_targets": sizes[n], "l2": 0.0} for n in numbers])
    shares = [0.7 ** 6] + [0.7 ** (k - 1) * 0.3 for k in range(1, 7)]  # free, then T1..T6
    for conv in model.backbone.convs:
        conv.owner.assign(rng.choice(7, size=conv.owner.shape, p=shares).astype(np.int8))
    served_tasks = [(n, tasks.task(n).name, tasks.task(n).kind) for n in numbers]
    return predict.Served(model, vocab, targets, served_tasks, view, "generated")


def users_per_second(call, batches):
    call(batches[0])  # compile
    start = time.perf_counter()
    for batch in batches:
        call(batch)
    return len(batches) * len(batches[0]) / (time.perf_counter() - start)


def case_predict(args) -> None:
    """users/s of every task (predict.py's path and the exported SavedModel) and export sizes."""
    import dataclasses

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
        for number, name, kind in conure.tasks:
            one = predict.Predictor(dataclasses.replace(conure, tasks=[(number, name, kind)]), batch_size=PREDICT_BATCH)
            rows.append({"task": f"T{number} {name}", "answers": f"{conure.n_answers(number):,}",
                         "predict.py users/s": f"{users_per_second(one.answer, batches):,.0f}"})
            if saved_model:
                serve = loaded.signatures[name]
                rate = users_per_second(lambda batch: serve(tokens=tf.constant(token_of[batch])), batches)
                rows[-1]["SavedModel users/s"] = f"{rate:,.0f}"
        with open(tmp / "users.csv", "w") as f:
            f.writelines(",".join(line) + "\n" for batch in batches for line in token_of[batch])
        done = predict.write_answers(conure, tmp / "users.csv", tmp / "answers.jsonl", log=lambda *a: None)
        rows.append({"task": "all six, file to JSON lines", "answers": "",
                     "predict.py users/s": f"{done['users'] / done['seconds']:,.0f}",
                     **({"SavedModel users/s": "-"} if saved_model else {})})
        _print_rows(rows)
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
