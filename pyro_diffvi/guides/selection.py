r"""Choosing between two posteriors of one guide by their measured bounds: the rule that keeps a diffusion guide
never measurably worse than its own Gaussian head."""

from __future__ import annotations

import math

__all__ = ["BoundSelector"]


class BoundSelector:
    r"""Tracks the lead of one posterior's bound over another's, in nats per data point,
    :math:`d_k = (\widehat{\mathcal L}^{\mathrm{chain}}_k - \widehat{\mathcal L}^{\mathrm{head}}_k) / N`, and picks
    the one measurably ahead.

    Each training step gives one unbiased estimate :math:`d_k` (both bounds estimated on the same batch).
    The selector keeps their exponential moving average :math:`m` with decay :math:`\delta` (bias-corrected
    as in Adam) and the standard error of that average,
    :math:`\mathrm{se} = \sqrt{\widehat{\mathrm{Var}}(d)\,(1-\delta)/(1+\delta)}` (the variance of an EMA of
    independent terms), and switches with hysteresis:

    * to the chain when :math:`m > \tau\, \mathrm{se}`;
    * back to the head when :math:`m < -\tau\, \mathrm{se}`,

    and only once the average spans its window, after :math:`1/(1-\delta)` estimates. Between the two thresholds the
    current choice stays, so a tie keeps whichever is in use, and a change needs the lead to be :math:`\tau`
    standard errors away from zero over the last :math:`\sim 1/(1-\delta)` steps. The state (``choice``, the
    moments, the count) is plain data for a ``state_dict``.

    Example:

    >>> from pyro_diffvi.guides import BoundSelector
    >>> selector = BoundSelector(decay=0.9, threshold=2.0)
    >>> for lead in [0.5, 0.7, 0.6, 0.4, 0.6] * 2:
    ...     _ = selector.record(lead)
    >>> selector.choice
    'chain'
    >>> for lead in [-1.0, -0.8] * 10:
    ...     _ = selector.record(lead)
    >>> selector.choice
    'head'

    :param decay: :math:`\delta \in (0, 1)`, the EMA's decay (0.99: about the last 100 steps).
    :param threshold: :math:`\tau > 0`, in standard errors.
    :param choice: the initial choice, ``"head"`` or ``"chain"``.
    """

    CHOICES = ("head", "chain")

    def __init__(self, *, decay: float = 0.99, threshold: float = 2.0, choice: str = "head") -> None:
        if not (isinstance(decay, (int, float)) and 0.0 < decay < 1.0):
            raise ValueError(f"decay must be a number in (0, 1), got {decay!r}")
        if not (isinstance(threshold, (int, float)) and threshold > 0):
            raise ValueError(f"threshold must be a positive number of standard errors, got {threshold!r}")
        if choice not in self.CHOICES:
            raise ValueError(f"choice must be one of {self.CHOICES}, got {choice!r}")
        self.decay = float(decay)
        self.threshold = float(threshold)
        self.choice = choice
        self.count = 0
        self.mean = 0.0
        self.second_moment = 0.0

    @property
    def lead(self) -> tuple[float, float]:
        """The averaged lead of the chain over the head (nats per data point) and its standard error."""
        if self.count == 0:
            return 0.0, math.inf
        correction = 1.0 - self.decay**self.count
        mean = self.mean / correction
        variance = max(self.second_moment / correction - mean * mean, 0.0)
        return mean, math.sqrt(variance * (1.0 - self.decay) / (1.0 + self.decay))

    def record(self, lead: float) -> str:
        """Add one estimate of the chain's lead (nats per data point) and return the choice it leads to; a
        non-finite estimate is ignored."""
        if not math.isfinite(lead):
            return self.choice
        self.count += 1
        self.mean = self.decay * self.mean + (1.0 - self.decay) * lead
        self.second_moment = self.decay * self.second_moment + (1.0 - self.decay) * lead * lead
        if self.count < round(1.0 / (1.0 - self.decay)):
            return self.choice
        mean, se = self.lead
        if self.choice == "head" and mean > self.threshold * se:
            self.choice = "chain"
        elif self.choice == "chain" and mean < -self.threshold * se:
            self.choice = "head"
        return self.choice

    def state_dict(self) -> dict:
        return {"choice": self.choice, "count": self.count, "mean": self.mean, "second_moment": self.second_moment}

    def load_state_dict(self, state: dict) -> None:
        if state.get("choice") not in self.CHOICES:
            raise ValueError(f"state['choice'] must be one of {self.CHOICES}, got {state.get('choice')!r}")
        self.choice = state["choice"]
        self.count = int(state["count"])
        self.mean = float(state["mean"])
        self.second_moment = float(state["second_moment"])
