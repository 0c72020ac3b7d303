"""Benchmarks. Each case is a function in CASES; run one with --case=NAME.

    python bench.py --scale=small             # training and evaluation (the default case, "train")
    python bench.py --scale=ttl               # the same at full TTL scale (645,974 items; a GPU run)
    python bench.py --case=parse [--lines=1450000 --items=645974 --seed=0]
    python bench.py --case=predict [--scale=small|sample|ttl]   # users/s per task, export sizes

The "train" case times real training steps of Conure stages and evaluation on generated data of the
chosen scale, and a matmul on the same device in the same run, and prints one table. Every
comparison in it (plain vs item-chunked softmax, float32 vs mixed bfloat16, XLA on/off on
TensorFlow, real batches vs one constant batch) is measured in that same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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

# ---------------------------------------------------------------------------------------
# train: steps/s, achieved TFLOP/s against a measured matmul peak
# ---------------------------------------------------------------------------------------

SCALES = {  # generated data and model of each scale
    "small": {"items": 20_000, "users": 4_000, "channels": 128, "dilations": [1, 4, 1, 4], "batch": 32, "steps": 8},
    "sample": {"items": 123_729, "users": 10_000, "channels": 256, "dilations": [1, 4] * 4, "batch": 32, "steps": 8},
    "ttl": {"items": 645_974, "users": 20_000, "channels": 256, "dilations": [1, 4] * 4, "batch": 32, "steps": 30},
}
TTL_TRAIN_USERS = int(1_450_000 * 0.8)
T2_TARGETS = 17_880


def conv_flops(positions, channels, dilations, kernel_size=3):
    """Forward FLOPs of the residual stack: two convs per block, 2*k*C*C per position each."""
    return 2 * len(dilations) * 2 * kernel_size * channels * channels * positions


def matmul_peak(dtype, n=4096, repeats=5):
    """TFLOP/s of an n x n x n matmul on this device, compiled, best of `repeats`."""
    import keras

    import trainer

    a = keras.random.normal((n, n), dtype=dtype, seed=0)
    multiply = trainer.compiled(lambda x, y: keras.ops.cast(keras.ops.sum(keras.ops.matmul(x, y)), "float32"), [])
    multiply(a, a)
    best = min(_timed(lambda: multiply(a, a)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e12


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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


def time_steps(model, number, data, config, steps, constant, xla):
    """Steps per second of real training steps (after two compile/warm-up steps)."""
    import data_loader
    import trainer

    model.set_trainable(number, shared=number == 1)
    step = trainer.TrainStep(lambda batch: model.task_loss(batch, number, "train"), model.trainable_variables,
                             model.variables, trainer.adam(1e-4), xla=xla)
    batches = data_loader.prefetched(data.train_batches(config, epoch=0))
    first = next(batches)
    for _ in range(2):
        step(first)
    start = time.perf_counter()
    for _ in range(steps):
        step(first if constant else next(batches))
    return steps / (time.perf_counter() - start)


def time_eval(model, data, config, steps):
    import stage

    tokens, truth = data.test_inputs()
    capped = {**config, "eval_cap": config["eval_batch_size"] * steps}
    stage.evaluate(model, 1, data, {**capped, "eval_cap": config["eval_batch_size"]})  # compile
    seconds = _timed(lambda: stage.evaluate(model, 1, data, capped))
    return min(len(tokens), capped["eval_cap"]) / seconds


def peak_memory_mb():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_train(args) -> None:
    """steps/s, sequences/s and achieved TFLOP/s of Conure stages and evaluation vs a measured matmul peak."""
    import keras

    import stage

    scale = {**SCALES[args.scale], **{k: v for k, v in (("batch", args.batch), ("steps", args.steps)) if v}}
    rng = np.random.default_rng(args.seed)
    t1, t2 = bench_data(scale, rng)
    backend = keras.backend.backend()
    device = _device_name()
    peaks = {"float32": matmul_peak("float32")}
    peaks["mixed_bfloat16"] = matmul_peak("bfloat16")
    base = {**stage.DEFAULTS, **stage.CHAIN_DEFAULTS, "channels": scale["channels"], "dilations": scale["dilations"],
            "batch_size": scale["batch"], "eval_batch_size": 256, "full_softmax": False, "exclude_padding": False}
    positions = scale["batch"] * 100
    n_sampled = int(base["num_sampled_ratio"] * scale["items"])
    conv = conv_flops(positions, scale["channels"], scale["dilations"])
    head = {"sampled": 2 * positions * n_sampled * scale["channels"],
            "full": 2 * positions * scale["items"] * scale["channels"]}
    rows = []

    default_xla = backend == "tensorflow" and stage.DEFAULTS["xla"]

    def measure(name, number, data, flops, precision="float32", constant=False, xla=default_xla, chunk=65536,
                **config):
        cfg = {**base, **config, "precision": precision, "softmax_chunk": chunk}
        model = stage.build_model(t1.vocab.size, cfg, [
            {"task": 1, "n_targets": t1.n_targets, "l2": 0.0},
            {"task": 2, "n_targets": T2_TARGETS, "l2": 0.02}][:number])
        model.softmax_chunk = chunk
        rate = time_steps(model, number, data, cfg, scale["steps"], constant, xla)
        achieved = 3 * flops * rate / 1e12  # forward + backward ~ 3x the forward matmuls
        rows.append({"case": name, "backend": backend + (" +XLA" if xla else ""), "device": device, "dtype": precision,
                     "batch": scale["batch"], "steps/s": f"{rate:.2f}", "seq/s": f"{rate * scale['batch']:,.0f}",
                     "TFLOP/s": f"{achieved:.3f}", "peak TFLOP/s": f"{peaks[precision]:.3f}",
                     "of peak": f"{achieved / peaks[precision]:.0%}",
                     "TTL epoch": _minutes(TTL_TRAIN_USERS / scale["batch"] / rate) if number == 1 else "-",
                     "peak MB so far": f"{peak_memory_mb():,.0f}"})

    measure("T1 sampled softmax", 1, t1, conv + head["sampled"])
    measure("T1 sampled, constant batch", 1, t1, conv + head["sampled"], constant=True)
    measure("T1 sampled", 1, t1, conv + head["sampled"], precision="mixed_bfloat16")
    if backend == "tensorflow":
        measure("T1 sampled, XLA off", 1, t1, conv + head["sampled"], xla=False)
    measure("T1 full softmax, plain", 1, t1, conv + head["full"], full_softmax=True, chunk=0)
    measure("T1 full softmax, chunked", 1, t1, conv + head["full"], full_softmax=True,
            chunk=max(scale["items"] // 4, 1))
    measure("T2 BPR", 2, t2, conv_flops(scale["batch"] * 101, scale["channels"], scale["dilations"]))
    _print_rows(rows)
    cfg = {**base, "eval_chunk": 65536}
    model = stage.build_model(t1.vocab.size, cfg, [{"task": 1, "n_targets": t1.n_targets, "l2": 0.0}])
    rate = time_eval(model, t1, cfg, steps=max(1, scale["steps"] // 4))
    per_user = conv_flops(100, scale["channels"], scale["dilations"]) + 2 * scale["items"] * scale["channels"]
    eval_flops = per_user * rate
    print(f"\nT1 evaluation (item-chunked ranking, batch 256): {rate:,.0f} users/s, {eval_flops / 1e12:.3f} TFLOP/s "
          f"({eval_flops / 1e12 / peaks['float32']:.0%} of the float32 peak); 290k held-out users at this scale's "
          f"rate: {_minutes(290_000 / rate)}")


def _device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else \
        f"CPU x{os.cpu_count()}"


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

RELEASE_TARGETS = {2: 17_880, 3: 7_540, 4: 3, 5: 9, 6: 7}  # SPEC section 2: T2-T6 target spaces
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
}


def main(argv=None) -> None:
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
    parser.add_argument_group("predict", f"uses --scale and --steps (batches of {PREDICT_BATCH} users timed per task, "
                                         "default 4)")
    parse = parser.add_argument_group("parse")
    parse.add_argument("--lines", type=int, default=1_450_000,
                       help="T1 lines to generate (default: TTL's 1.45M)")
    parse.add_argument("--items", type=int, default=645_974,
                       help="distinct items (default: TTL's 645,974)")
    args = parser.parse_args(argv)
    CASES[args.case](args)


if __name__ == "__main__":
    main()
