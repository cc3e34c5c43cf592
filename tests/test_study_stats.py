"""The study's statistics (``cifar_moe/runs/study/stats.py``) against table values and sums
done by hand: Student t quantiles and p-values, t-intervals, paired differences, Holm, the
image-sampling floors, the per-image bit packing."""

import math

import pytest

from cifar_moe.runs.study import stats

# Student t 0.975 quantiles from a printed table (two-sided 95 %).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 19: 2.093, 29: 2.045, 60: 2.000}


@pytest.mark.parametrize("df", sorted(T975))
def test_t_quantile_matches_the_table(df):
    assert stats.t_quantile(0.975, df) == pytest.approx(T975[df], abs=6e-4)


def test_t_quantile_of_other_levels_and_its_tail_round_trip():
    assert stats.t_quantile(0.95, 10) == pytest.approx(1.812, abs=6e-4)  # one-sided 5 %
    assert stats.t_quantile(0.995, 5) == pytest.approx(4.032, abs=6e-4)
    assert stats.t_quantile(0.975, 10_000) == pytest.approx(stats.Z95, abs=1e-3)  # -> normal
    for df in (1, 3, 19):
        assert stats.t_two_sided_p(stats.t_quantile(0.975, df), df) == pytest.approx(0.05)


def test_t_p_values_by_closed_forms():
    # df = 1 is Cauchy: P(|T| > t) = 1 - 2 atan(t) / pi
    assert stats.t_two_sided_p(3.0, 1) == pytest.approx(1 - 2 * math.atan(3) / math.pi)
    # df = 2: P(|T| > t) = 1 - t / sqrt(2 + t^2)
    assert stats.t_two_sided_p(1.5, 2) == pytest.approx(1 - 1.5 / math.sqrt(4.25))
    assert stats.t_two_sided_p(0.0, 7) == 1.0


def test_mean_ci_by_hand():
    # 0.75, 1.00, 0.50, 0.25: mean 0.625, squares of deviations sum to 0.3125, sd =
    # sqrt(0.3125 / 3) = 0.32275; half-width t(0.975, 3) 3.1824 * 0.32275 / 2 = 0.51357
    ci = stats.mean_ci([0.75, 1.0, 0.5, 0.25])
    assert ci["mean"] == 0.625 and ci["sd"] == pytest.approx(0.322749, abs=1e-6)
    assert ci["half_width"] == pytest.approx(0.513565, abs=1e-5)
    assert (ci["low"], ci["high"]) == pytest.approx((0.111435, 1.138565), abs=1e-5)
    assert stats.mean_ci([0.7])["half_width"] is None  # one run: no interval


def test_paired_difference_uses_only_shared_pairs_by_hand():
    a = {(0, 0): 0.75, (0, 1): 1.0, (1, 0): 0.5, (1, 1): 0.25, (2, 0): 0.9}
    b = {(0, 0): 0.5, (0, 1): 0.75, (1, 0): 0.25, (1, 1): 0.5, (3, 0): 0.1}
    # differences 0.25, 0.25, 0.25, -0.25: mean 0.125, sd 0.25, se 0.125, t = 1 on 3 df
    d = stats.paired_difference(a, b)
    assert d["n"] == 4 and d["pairs"] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert d["mean"] == 0.125 and d["sd"] == 0.25
    assert d["half_width"] == pytest.approx(3.182446 * 0.125, abs=1e-6)
    # df = 3 closed form: P(|T| > 1) = 1 - 2 / pi * (atan(1 / sqrt 3) + (1/sqrt 3) / (4/3))
    assert d["p"] == pytest.approx(0.391002, abs=1e-6)
    same = stats.paired_difference({1: 0.75, 2: 0.5}, {1: 0.5, 2: 0.25})  # always +0.25
    assert same["sd"] == 0.0 and same["p"] == 0.0
    assert stats.paired_difference({1: 0.5, 2: 0.25}, {1: 0.5, 2: 0.25})["p"] == 1.0


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.06
    assert stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx(
        {"a": 0.03, "c": 0.06, "b": 0.06})
    assert stats.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}  # capped at 1
    assert stats.holm({}) == {}


def test_image_floors_by_hand():
    # the slice's 5,085 validation images at 80 %: sqrt(0.8 * 0.2 / 5085) = 0.005609
    assert stats.binomial_se(0.8, 5085) == pytest.approx(0.0056093, abs=1e-7)
    # One seed, 10 images: b = 3 right only in a, c = 1 right only in b:
    # McNemar sqrt(((b + c) / N - ((b - c) / N)^2) / N) = sqrt((0.4 - 0.04) / 10)
    a = [1, 1, 1, 1, 1, 0, 0, 1, 0, 0]
    b = [1, 1, 0, 0, 0, 1, 0, 1, 0, 0]
    assert stats.image_diff_se({0: [(a, b)]}) == pytest.approx(math.sqrt(0.036))
    # Two seeds on a fold average each image first: e = (0, .5, .5, .5) -> mean 0.375,
    # mean of squares 0.1875, SE = sqrt((0.1875 - 0.140625) / 4)
    seeds = [([1, 1, 1, 0], [1, 0, 0, 0]), ([1, 1, 0, 1], [1, 1, 0, 0])]
    assert stats.image_diff_se({1: seeds}) == pytest.approx(math.sqrt(0.046875 / 4))
    assert stats.image_diff_se({0: [([1, 0], [1, 0, 1])]}) is None  # not the same images


def test_bits_round_trip_compactly():
    bits = [1, 0, 1, 1, 0, 0, 0, 1, 1]
    assert stats.pack_bits(bits) == "sYA="  # 10110001 1(0000000)
    assert stats.unpack_bits(stats.pack_bits(bits), 9) == bits
    fold = [i % 3 == 0 for i in range(508)]
    assert len(stats.pack_bits(fold)) == 88  # 64 bytes as base64
    assert stats.unpack_bits(stats.pack_bits(fold), 508) == [int(x) for x in fold]
