"""bench.py's shares of the matmul peak: against the best of the peak's sweep, never above it."""
import pytest

from tools import bench, peak


def fake_rates(rates):
    """A peak.measure rate_of that looks its rate up by (shape, engine), 0.01 for any other."""
    return lambda shape, dtype, engine, repeats: rates.get((shape, engine), 0.01)


def test_the_peak_is_the_best_matmul_of_the_sweep_with_its_shape_and_engine():
    conv = (64, 12, 4)
    rates = {((512, 512, 512), "xla"): 0.05, ((64, 4, 12), peak.engines()[0]): 0.09}  # conv's backward
    best = peak.measure("float32", [conv], rate_of=fake_rates(rates))
    assert (best.tflops, best.shape, best.engine) == (0.09, (64, 4, 12), peak.engines()[0])


def test_a_share_is_taken_of_the_sweeps_best():
    best = peak.best_of({((8, 8, 8), "xla"): 0.02, ((4, 4, 4), "xla"): 0.08})
    assert peak.share_of_peak(0.06, best) == "75%"
    assert peak.share_of_peak(0.08, best) == "100%"


def test_a_rate_above_the_peak_is_an_error_not_a_share():
    with pytest.raises(peak.AbovePeakError):
        peak.share_of_peak(0.09, peak.Peak(0.08, (4, 4, 4), "xla"))


def measured_row(tflops, peak_tflops):
    return {"backend": "jax", "rate": 2.0, "fastest_s": 0.4, "tflops": tflops, "peak_tflops": peak_tflops,
            "split": {}, "start_mb": 0, "peak_mb": 0, "model_mb": 0}


def test_a_train_row_is_a_share_of_the_peak_probed_in_its_own_minutes():
    sweep = peak.Peak(0.4, (4, 4, 4), "xla")
    printed = bench.train_row(bench.ROWS[0], measured_row(0.15, 0.2), bench.SCALES["small"], "CPU x2", sweep)
    assert (printed["peak TFLOP/s"], printed["of peak"]) == ("0.200", "75%")


def test_a_train_row_above_the_peak_fails_naming_the_row():
    with pytest.raises(peak.AbovePeakError, match="T1 sampled softmax"):
        bench.train_row(bench.ROWS[0], measured_row(0.2, 0.1), bench.SCALES["small"], "CPU x2",
                        peak.Peak(0.1, (4, 4, 4), "xla"))


def test_the_sweep_holds_the_squares_and_each_rows_matmuls_with_their_backward_shapes():
    scale = bench.SCALES["small"]  # 20,000 items, 128 channels, batch 32
    conv, softmax = bench.row_matmuls(bench.ROWS[0], scale, 32)
    assert (conv, softmax) == ((3200, 384, 128), (3200, 128, 4000))
    shapes = peak.sweep_shapes([conv, softmax])
    assert {(n, n, n) for n in peak.SQUARES} | {(3200, 4000, 128), (128, 3200, 4000)} <= set(shapes)


def test_a_user_representation_counts_only_its_receptive_field():
    scale = bench.SCALES["small"]  # dilations 1, 4, 1, 4: the last position sees 61 inputs
    assert bench.user_positions(scale, 100) == 61
    assert bench.eval_flops_per_user(scale) == bench.conv_flops(61, 128, [1, 4, 1, 4]) + 2 * 20_000 * 128
