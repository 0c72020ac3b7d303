"""bench.py's reporting: a share of the matmul peak is never printed above 100%."""
from tools import bench


def test_share_of_peak_is_printed_up_to_100_percent():
    assert bench.share_of_peak(0.043, 0.072) == "60%"
    assert bench.share_of_peak(1.0, 1.0) == "100%"


def test_share_above_the_peak_is_refused():
    assert bench.share_of_peak(0.034, 0.015) == "n/a*"
