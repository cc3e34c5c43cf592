"""The statistics of a study's table, as pure functions (no numpy, no scipy: the study
process stays light, and the formulas are all here to read).

* mean and 95 % CI of a row: Student t over its runs, ``mean +/- t(0.975, n-1) * s / sqrt(n)``;
* paired difference to the reference row over the (fold, seed) pairs both ran:
  ``d_k = a_k - b_k``, ``mean(d) +/- t(0.975, n-1) * s_d / sqrt(n)``, two-sided t-test p;
* Holm's step-down correction of the secondary comparisons' p-values;
* the image-sampling floor: the part of the uncertainty that the finite validation images
  alone impose, whatever the number of seeds (see :func:`binomial_se`, :func:`image_diff_se`).
"""

import base64
import math
import statistics
from collections.abc import Mapping, Sequence

Z95 = 1.959963984540054
"""The normal 0.975 quantile: a floor's half-width is ``Z95 * SE``."""


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((qam + 2 * m) * (a + 2 * m)),
                    -(a + m) * (qab + m) * x / ((a + 2 * m) * (qap + 2 * m))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast only below the mean; above it, use the symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile (0.5 < q < 1) of Student's t: bisection on the exact tail above."""
    tail = 2.0 * (1.0 - q)
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > tail:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        low, high = (mid, high) if t_two_sided_p(mid, df) > tail else (low, mid)
    return (low + high) / 2.0


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """n, mean, sd and the t-interval ``mean +/- t * sd / sqrt(n)`` (None below 2 values)."""
    n = len(values)
    out = {"n": n, "mean": statistics.fmean(values) if n else None, "sd": None,
           "half_width": None, "low": None, "high": None}
    if n >= 2:
        sd = statistics.stdev(values)
        half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, half_width=half, low=out["mean"] - half, high=out["mean"] + half)
    return out


def paired_difference(a: Mapping, b: Mapping, level: float = 0.95) -> dict:
    """``a - b`` over the keys both have (a key: one (fold, seed) pair): the t-interval of the
    mean difference and the two-sided paired t-test p (None below 2 pairs)."""
    keys = [k for k in a if k in b]
    out = mean_ci([a[k] - b[k] for k in keys], level)
    out["pairs"] = [list(k) if isinstance(k, tuple) else k for k in keys]
    out["p"] = None
    if out["n"] >= 2:
        se = out["sd"] / math.sqrt(out["n"])
        # A spread of exactly zero: any nonzero mean difference is certain, zero is not one.
        out["p"] = (t_two_sided_p(out["mean"] / se, out["n"] - 1) if se > 0
                    else float(out["mean"] == 0))
    return out


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: sorted ascending, p_(i) times (m - i + 1), made
    monotone by a running maximum, capped at 1."""
    ordered = sorted(pvalues, key=pvalues.__getitem__)
    m, running, adjusted = len(ordered), 0.0, {}
    for i, name in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def binomial_se(p: float, n_images: int) -> float:
    """Image-sampling SE of an accuracy ``p`` measured on ``n_images`` distinct images:
    ``sqrt(p (1 - p) / N)``. Seeds rerun the same images, so N counts each fold once."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n_images)


def image_diff_se(per_fold: Mapping[object, Sequence[tuple[Sequence[int], Sequence[int]]]]
                  ) -> float | None:
    """Image-sampling SE of a paired accuracy difference, from per-image correctness.

    ``per_fold[f]`` lists, for each seed both rows ran on fold f, the two runs' 0/1 vectors
    over that fold's images. Each image's difference is averaged over the seeds,
    ``e_i = mean_s(a_si - b_si)``; over the N distinct images of all folds the SE of the
    mean is ``sqrt((sum(e_i^2) / N - mean(e)^2) / N)``. With one seed this is McNemar's:
    ``sqrt(((b + c) / N - ((b - c) / N)^2) / N)``, b and c the two kinds of disagreement.
    """
    diffs: list[float] = []
    for pairs in per_fold.values():
        if not pairs:
            continue
        length = len(pairs[0][0])
        if any(len(x) != length or len(y) != length for x, y in pairs):
            return None  # runs on one fold scored different images: no per-image pairing
        diffs += [statistics.fmean(x[i] - y[i] for x, y in pairs) for i in range(length)]
    if not diffs:
        return None
    n, mean = len(diffs), statistics.fmean(diffs)
    return math.sqrt(max(statistics.fmean(e * e for e in diffs) - mean * mean, 0.0) / n)


def pack_bits(bits: Sequence[bool | int]) -> str:
    """0/1 per image as base64 of its bytes, first image in the top bit (508 images: 88
    characters instead of a 1,500-character JSON list)."""
    packed = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            packed[i // 8] |= 0x80 >> (i % 8)
    return base64.b64encode(bytes(packed)).decode("ascii")


def unpack_bits(text: str, n: int) -> list[int]:
    """The inverse of :func:`pack_bits` for ``n`` images."""
    packed = base64.b64decode(text)
    return [(packed[i // 8] >> (7 - i % 8)) & 1 for i in range(n)]
