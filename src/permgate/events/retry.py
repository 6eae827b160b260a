"""When to try a failed delivery again, and when to give up.

Stripe retries for up to three days with exponential backoff. permgate: the first retry one
minute after the first failure, each wait twice the previous, capped at six hours, with +-10 %
jitter so that a receiver coming back is not hit by every queued event at once; no attempt
starts more than 72 hours after the first one (about 20 attempts in all).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_delay: float = 60.0
    max_delay: float = 6 * 3600.0
    horizon: float = 72 * 3600.0
    jitter: float = 0.1

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
        base: float = min(self.first_delay * 2.0 ** min(attempts - 1, 60), self.max_delay)
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def next_attempt(self, attempts: int, first_attempt: datetime,
                     now: datetime) -> datetime | None:
        """The next attempt's time, or None when it would fall beyond the horizon."""
        at = now + timedelta(seconds=self.delay(attempts))
        if at - first_attempt > timedelta(seconds=self.horizon):
            return None
        return at
