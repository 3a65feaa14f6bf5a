"""Weight schedules shared by the methods: ramps over (fractional) epochs.

``t`` is training time in epochs, ``step / steps_per_epoch`` (:meth:`Method.epoch_time
<workbench.methods.base.Method.epoch_time>`), so a ramp means the same at any batch count.
"""

from __future__ import annotations

import math

__all__ = ["sigmoid_rampup"]


def sigmoid_rampup(t: float, length: float) -> float:
    """Tarvainen & Valpola's ramp-up ``exp(-5 (1 - t/T)^2)`` for t < T, then 1 (T = ``length``;
    T <= 0: no ramp)."""
    if length <= 0 or t >= length:
        return 1.0
    phase = 1.0 - max(t, 0.0) / length
    return math.exp(-5.0 * phase * phase)
