"""The matmul peak of this device: the best of a sweep of shapes, and the data-sheet ceiling.

A share of the peak is only honest when no matmul on the device beats the peak. So the probe times
squares from 512 to 4096 and the largest matmuls of the measured rows themselves (each with the
shapes of its forward and backward), on every engine a training step may use (on TensorFlow its
own kernels and XLA; on JAX, XLA), and keeps the best. A rate above it is an error, not a share.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

SQUARES = (512, 1024, 2048, 3072, 4096)

# Dense peaks of vendors' data sheets, TFLOP/s: float32, TF32 (XLA may run float32 matmuls on
# TF32 tensor cores), bfloat16. Matched against the device name, first match wins.
DATA_SHEET_TFLOPS = {
    "H100 PCIe": (51.2, 378.0, 756.0),
    "H100": (66.9, 494.7, 989.4),
    "H200": (66.9, 494.7, 989.4),
    "A100": (19.5, 156.0, 312.0),
    "L4": (30.3, 60.0, 121.0),
}


AMX_BF16_FLOPS_PER_CYCLE = 1024  # Intel's AMX: one core's bfloat16 tile multiplies, per cycle


class AbovePeakError(ValueError):
    """A measured rate above the measured peak: the probe or the FLOP count is wrong."""


@dataclass(frozen=True)
class Peak:
    """The best rate of a sweep: TFLOP/s, the (m, k, n) shape and the engine that reached it."""
    tflops: float
    shape: tuple
    engine: str

    def describe(self):
        m, k, n = self.shape
        return f"{self.tflops:.3f} TFLOP/s ({m} x {k} times {k} x {n}, {self.engine})"


def matmul_shapes(m, k, n):
    """A matmul [m, k] x [k, n] and the two its gradient takes: [m, n] x [n, k] and [k, m] x [m, n]."""
    return [(m, k, n), (m, n, k), (k, m, n)]


def sweep_shapes(row_shapes=()):
    """The squares, then each row's matmuls with their backward shapes, each shape once."""
    shapes = [(n, n, n) for n in SQUARES]
    for shape in row_shapes:
        shapes += [s for s in matmul_shapes(*shape) if s not in shapes]
    return shapes


def best_of(rates):
    """The Peak of {(shape, engine): TFLOP/s}."""
    (shape, engine), tflops = max(rates.items(), key=lambda item: item[1])
    return Peak(tflops, shape, engine)


def share_of_peak(achieved, peak):
    """"43%" of `peak` (a Peak or TFLOP/s). Above the peak it raises: then the peak is no peak, or
    the FLOP count is wrong, and no share can be printed."""
    best = peak.tflops if isinstance(peak, Peak) else peak
    if achieved > best:
        raise AbovePeakError(f"{achieved:.3f} TFLOP/s is above the measured matmul peak {best:.3f}: "
                             "the peak probe misses a faster matmul or the FLOP count is wrong")
    return f"{achieved / best:.0%}"


def engines():
    """The engines a training step of this backend runs its matmuls on."""
    import keras

    return ("xla",) if keras.backend.backend() == "jax" else ("tensorflow", "xla")


def sweep(dtype, row_shapes=(), repeats=5, rate_of=None):
    """{(shape, engine): TFLOP/s} of `dtype` over sweep_shapes(row_shapes) on every engine;
    `rate_of(shape, dtype, engine, repeats)` times one (default: matmul_rate)."""
    rate_of = rate_of or matmul_rate
    return {(shape, engine): rate_of(shape, dtype, engine, repeats)
            for shape in sweep_shapes(row_shapes) for engine in engines()}


def measure(dtype, row_shapes=(), repeats=5, rate_of=None):
    """The Peak of sweep(...): the best matmul of the sweep."""
    return best_of(sweep(dtype, row_shapes, repeats, rate_of))


def matmul_rate(shape, dtype, engine, repeats=5, budget_s=2.0):
    """TFLOP/s of one plain [m, k] x [k, n] matmul: compiled on its own (nothing fused into it), its
    result materialised in device memory and waited for; best of `repeats` after a warm-up (fewer
    when they would take over `budget_s`)."""
    probe = Probe(shape, dtype, engine)
    rates = []
    while len(rates) < repeats and sum(probe.flops / r / 1e12 for r in rates) < budget_s:  # slow shapes: fewer
        rates.append(probe(times=1))
    return max(rates)


class Probe:
    """One compiled matmul of a shape, dtype and engine; each call runs it and returns its TFLOP/s.
    Timed between the steps of a row, it gives the peak of the same moment: a shared machine's
    speed can change within a run."""

    def __init__(self, shape, dtype, engine):
        import keras

        m, k, n = shape
        self.flops = 2 * m * k * n
        a = keras.random.normal((m, k), dtype=dtype, seed=0)
        b = keras.random.normal((k, n), dtype=dtype, seed=1)
        if keras.backend.backend() == "jax":
            import jax

            multiply = jax.jit(jax.numpy.matmul)
            self.run = lambda: multiply(a, b).block_until_ready()
        else:
            import tensorflow as tf

            multiply = tf.function(tf.linalg.matmul, jit_compile=engine == "xla")
            self.run = lambda: multiply(a, b)[0, 0].numpy()  # reading one element waits for all of it
        self.run()  # compile and warm up

    @classmethod
    def of(cls, peak, dtype):
        """The probe of a Peak's winning shape and engine."""
        return cls(peak.shape, dtype, peak.engine)

    def __call__(self, times=3):
        """The best TFLOP/s of `times` runs (a thread that wakes up meanwhile slows one run, not all)."""
        return self.flops / min(_timed(self.run) for _ in range(times)) / 1e12


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def device_ceiling(device):
    """(float32, bfloat16) TFLOP/s from the data sheet, and where the figure comes from: a known
    GPU's, or for a CPU cores x clock x 2 FMA units x SIMD lanes x 2 at the clock the OS reports."""
    for name, (fp32, tf32, bf16) in DATA_SHEET_TFLOPS.items():
        if name in device:
            return (max(fp32, tf32), bf16), f"{name} data sheet (float32 {fp32}, TF32 {tf32}, bfloat16 {bf16})"
    if not device.startswith("CPU"):
        return None, "no data-sheet figure for this device"
    import trainer

    info = trainer.cpu_info()
    flags, mhz = info["flags"], info["mhz"]
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cycles = len(mhz) * max(mhz) * 1e6
    fp32 = cycles * 2 * lanes * 2 / 1e12
    bf16 = cycles * AMX_BF16_FLOPS_PER_CYCLE / 1e12 if "amx_bf16" in flags else \
        2 * fp32 if "avx512_bf16" in flags else fp32
    return (fp32, bf16), (f"{len(mhz)} cores x {max(mhz):,.0f} MHz (the clock the OS reports) x 2 FMA x {lanes} "
                          "float32 lanes x 2" + (f"; bfloat16 on AMX tiles, {AMX_BF16_FLOPS_PER_CYCLE:,} FLOP per "
                                                 "cycle and core" if "amx_bf16" in flags else ""))


def ceiling_note(peak, ceiling, device):
    """What a peak above the data-sheet ceiling means: on a CPU a clock above the one the OS
    reports (turbo); on a GPU a broken probe. "" when the peak is within the ceiling."""
    if ceiling is None or peak.tflops <= ceiling:
        return ""
    if device.startswith("CPU"):
        return (f"the peak is {peak.tflops / ceiling:.2f} x the ceiling at the reported clock: the cores run "
                "faster than the clock the OS reports (turbo)")
    return "warning: the peak exceeds the device's data sheet; the probe does not measure a matmul"
