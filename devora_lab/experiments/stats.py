"""Statistics for comparing variants, as pure functions over counts.

So far the non-inferiority test for success rates, which the cost recommendations use to
say a cheaper model is "not worse by more than a margin" on evidence rather than price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from devora_lab.errors import ConfigError

__all__ = ["NonInferiority", "noninferiority_proportions"]


@dataclass(frozen=True, slots=True)
class NonInferiority:
    """Candidate minus control success rate, its one-sided lower confidence bound, and
    the test of H0: difference <= -margin against H1: difference > -margin."""

    difference: float
    lower_bound: float
    margin: float
    z: float
    p_value: float
    alpha: float

    @property
    def non_inferior(self) -> bool:
        return self.p_value < self.alpha


def noninferiority_proportions(control_successes: int, control_n: int,
                               candidate_successes: int, candidate_n: int, *,
                               margin: float = 0.02, alpha: float = 0.05) -> NonInferiority:
    """One-sided Wald test that the candidate's success rate is at most ``margin`` below
    the control's (unpooled standard error, as for a difference of independent rates).

    Equivalent to checking that the lower ``1 - alpha`` confidence bound of the difference
    lies above ``-margin``. With rates at 0 or 1 the standard error is 0; then the
    observed difference decides alone, which only happens with tiny or perfect samples.
    """
    for name, value in (("control_n", control_n), ("candidate_n", candidate_n)):
        if value < 1:
            raise ConfigError(f"{name} must be positive, got {value}", fix="pass sample sizes")
    if not (0 <= control_successes <= control_n and 0 <= candidate_successes <= candidate_n):
        raise ConfigError("successes must lie between 0 and the sample size",
                          fix="pass success counts no larger than the number of trials")
    if not (0 < margin < 1 and 0 < alpha < 1):
        raise ConfigError("margin and alpha must lie in (0, 1)", fix="e.g. margin=0.02, alpha=0.05")
    p_control = control_successes / control_n
    p_candidate = candidate_successes / candidate_n
    difference = p_candidate - p_control
    se = math.sqrt(p_control * (1 - p_control) / control_n
                   + p_candidate * (1 - p_candidate) / candidate_n)
    at_edge = math.inf if difference > -margin else -math.inf
    z = at_edge if se == 0 else (difference + margin) / se
    p_value = float(stats.norm.sf(z))
    lower = difference - float(stats.norm.ppf(1 - alpha)) * se
    return NonInferiority(difference, lower, margin, z, p_value, alpha)
