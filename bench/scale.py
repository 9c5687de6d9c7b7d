"""``LITEMAAS_BENCH_SCALE``: one factor for every benchmark script's durations, warm-ups, burst sizes and key counts.

Unset or ``1``: the scripts run as documented. Any other positive number multiplies what they measure for (with
minimums, so that a scaled run still measures something); the test suite uses it to run each documented command line
as written in a fraction of its time. A scaled run says so on its output and in its JSON: its figures mean nothing.
Bars on speed are not judged in a scaled run; checks of correctness (every request answered, spend recorded to the
token, keys created) are.
"""

from __future__ import annotations

import math
import os

VARIABLE = "LITEMAAS_BENCH_SCALE"


class BenchScale:
    def __init__(self, factor: float = 1.0):
        self.factor = factor

    @classmethod
    def from_env(cls, environ=None) -> BenchScale:
        """The factor ``LITEMAAS_BENCH_SCALE`` names; ValueError naming the variable when it is not a number > 0."""
        raw = (os.environ if environ is None else environ).get(VARIABLE, "")
        if not raw.strip():
            return cls(1.0)
        try:
            factor = float(raw)
        except ValueError:
            raise ValueError(f"{VARIABLE}={raw!r} is not a number: set it to a number greater than 0 (1, or unset, runs the benchmark in full)") from None
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"{VARIABLE}={raw!r}: the factor must be a finite number greater than 0 (1, or unset, runs the benchmark in full)")
        return cls(factor)

    @classmethod
    def for_parser(cls, parser) -> BenchScale:
        """``from_env`` for a script's argument parser: a bad value ends the script as a bad argument does (exit 2)."""
        try:
            return cls.from_env()
        except ValueError as exc:
            parser.error(str(exc))

    @property
    def scaled(self) -> bool:
        return self.factor != 1.0

    def seconds(self, value: float, minimum: float = 1.0) -> float:
        """A duration times the factor, never below ``minimum`` (nor below what was asked when that is less)."""
        if not self.scaled:
            return value
        return max(min(value, minimum), value * self.factor)

    def count(self, value: int, minimum: int) -> int:
        """A count (requests in a burst, keys) times the factor, rounded, never below ``minimum`` (nor below what was
        asked when that is less)."""
        if not self.scaled:
            return value
        return max(min(value, minimum), int(round(value * self.factor)))

    def notice(self) -> str:
        """The one line a scaled run prints (empty when the run is not scaled)."""
        if not self.scaled:
            return ""
        return (f"SCALED RUN ({VARIABLE}={self.factor:g}): durations, warm-ups, burst sizes and key counts multiplied by {self.factor:g}; "
                "this run checks that the benchmark works, its figures mean nothing")

    def record(self) -> dict:
        """What the JSON results say about the scale."""
        return {"factor": self.factor, "scaled": self.scaled, "note": self.notice() or None}
