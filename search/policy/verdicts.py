"""How much a search's figures mean: rank agreement with an exact p, and differences beside noise.

    agreement([(quick, full), ...])   # Spearman rho, Kendall tau, a one-sided permutation p
    beside_noise(0.12, band)          # "+0.12 (noise band 0.30): within noise"

The p-value answers "how often would ranks agree this well by chance?", one-sided (agreement, not
its opposite, is what a quick stage is for). For n <= 8 it is exact: every one of the n!
orderings of the full values is counted, so n = 3 with rho = 1 gives 1/6 (scipy's asymptotic
two-sided p gave 0 there). Above 8, scipy's one-sided test. Below MIN_CONFIGS configs a verdict is
"too few to judge" whatever rho says.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

MIN_CONFIGS = 5
EXACT_UP_TO = 8


def below_trivial(attrs: dict[str, object]) -> str | None:
    """'BELOW the trivial reference: 13.56 dB against 16.02 dB', for a trial whose val PSNR is under
    each patch's mean taken as its reconstruction (its `val_psnr` and `trivial_psnr` user attrs),
    else None. Such a config learned less than nothing; every view that shows it says so."""
    psnr, trivial = attrs.get("val_psnr"), attrs.get("trivial_psnr")
    if not isinstance(psnr, (int, float)) or not isinstance(trivial, (int, float)) or psnr >= trivial:
        return None
    return f"BELOW the trivial reference: {psnr:.2f} dB against {trivial:.2f} dB"


def _ranks(values: list[float]) -> np.ndarray:
    from scipy.stats import rankdata

    return np.asarray(rankdata(values), dtype=np.float64)


def _spearman_of_ranks(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson correlation of rank vector x with each row of ys (ranks, average for ties)."""
    xc = x - x.mean()
    yc = ys - ys.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc**2).sum() * (yc**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (yc @ xc) / denominator, np.nan)


def exact_p(x: list[float], y: list[float]) -> float:
    """P(rho >= observed) over all orderings of y against x (one-sided, exact)."""
    rx, ry = _ranks(x), _ranks(y)
    observed = float(_spearman_of_ranks(rx, ry[None])[0])
    orderings = np.array(list(itertools.permutations(ry)))
    rhos = _spearman_of_ranks(rx, orderings)
    return float(np.mean(rhos >= observed - 1e-12))


@dataclass
class Agreement:
    """Quick vs full values of the same configs."""

    n: int
    rho: float | None
    """Spearman's rank correlation (None below 3 configs, or when one side is constant)."""
    tau: float | None
    """Kendall's tau-b."""
    p: float | None
    """One-sided: how often ranks agree at least this well by chance."""
    exact: bool = True

    @property
    def enough(self) -> bool:
        return self.n >= MIN_CONFIGS

    def sentence(self) -> str:
        if self.rho is None:
            return f"too few to judge ({self.n} finished promoted config(s); {MIN_CONFIGS} needed)"
        how = f"exact over all {math.factorial(self.n):,} orderings" if self.exact else "scipy, asymptotic"
        text = (f"Spearman rho = {self.rho:.2f}, Kendall tau = {self.tau:.2f}, one-sided p = {self.p:.3g} ({how}) "
                f"over {self.n} promoted configs")
        return text if self.enough else f"{text}: too few to judge ({MIN_CONFIGS} needed)"


def agreement(pairs: list[tuple[float, float]]) -> Agreement:
    from scipy.stats import kendalltau, spearmanr

    n = len(pairs)
    if n < 3:
        return Agreement(n, None, None, None)
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    rho = float(spearmanr(x, y).statistic)
    if math.isnan(rho):  # constant values on one side: no ranking to compare
        return Agreement(n, None, None, None)
    tau = float(kendalltau(x, y).statistic)
    if n <= EXACT_UP_TO:
        return Agreement(n, rho, tau, exact_p(x, y))
    return Agreement(n, rho, tau, float(spearmanr(x, y, alternative="greater").pvalue), exact=False)


def beside_noise(diff: float, band: float | None, digits: int = 2) -> str:
    """A difference beside the noise band it must exceed to mean anything."""
    text = f"{diff:+.{digits}f}"
    if band is None:
        return f"{text} (noise not measured)"
    verdict = "beyond noise" if abs(diff) > band else "within noise"
    return f"{text} (noise band {band:.{digits}f}): {verdict}"
