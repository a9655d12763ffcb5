"""Seeded chaos: which faults the sandbox injects into its Numerai surface, how often, how many."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from sandbox.errors import SandboxConfigError, SandboxError

# What the counters count. `range_503` is a truncate fault met by a `Range` resume request;
# `drop_after` is a drop after the request was processed (the answer is lost, the effect is not).
COUNTED = ("graphql_5xx", "delay", "truncate", "range_503", "put_fail", "drop", "drop_after")

Drop = Literal["before", "after"]


@dataclass(frozen=True)
class ChaosProfile:
    """How often each fault strikes (probabilities from 0 to 1) and how long a delay lasts.

    graphql_5xx: a GraphQL POST answers 502 or 503 with a body.
    delay: a GraphQL, file or upload request waits `delay_s` (a [min, max] range) first.
    truncate: a file download sends its full Content-Length, then closes after a part;
        a `Range` resume request answers 503 with an error body instead.
    put_fail: an upload PUT answers 500 or 503; the file is not stored.
    drop: the connection closes without an answer (before or, half the time, after the
        request was processed).
    """

    graphql_5xx: float = 0.0
    delay: float = 0.0
    delay_s: tuple[float, float] = (0.0, 0.0)
    truncate: float = 0.0
    put_fail: float = 0.0
    drop: float = 0.0

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SandboxError(f"chaos {name} is a probability from 0 to 1, not {value!r}")
        low, high = self.delay_s
        if not 0.0 <= low <= high:
            raise SandboxError(
                f"chaos delay_s must be [min, max] with 0 <= min <= max: {low, high}"
            )


_PROBABILITIES = tuple(f.name for f in fields(ChaosProfile) if f.name != "delay_s")

PROFILES: dict[str, ChaosProfile] = {
    "bad-day": ChaosProfile(
        graphql_5xx=0.3, delay=0.2, delay_s=(2.0, 8.0), truncate=0.2, put_fail=0.2, drop=0.05
    ),
    "mild": ChaosProfile(
        graphql_5xx=0.05, delay=0.05, delay_s=(0.5, 2.0), truncate=0.05, put_fail=0.05, drop=0.01
    ),
}
DEFAULT_PROFILE = "bad-day"


def profile(name: str) -> ChaosProfile:
    """A named profile; an unknown name is a SandboxConfigError naming the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise SandboxConfigError(
            f"unknown chaos profile {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SandboxError(f"chaos {name} is a probability from 0 to 1, not {value!r}")
    return float(value)


def _delay_range(value: object) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise SandboxError(f"chaos delay_s is [min, max] in seconds, not {value!r}")
    return float(value[0]), float(value[1])


class Chaos:
    """Seeded fault decisions, one random stream per kind; thread-safe.

    Each kind draws from its own `random.Random` seeded from (seed, kind), so a run is
    reproducible given the same request order, and changing one probability leaves the other
    kinds' decisions as they were. Off until enabled.
    """

    def __init__(
        self, config: ChaosProfile | None = None, *, seed: int = 0, enabled: bool = False
    ) -> None:
        self._lock = threading.Lock()
        self.config = config or ChaosProfile()
        self.enabled = enabled
        self._reseed(seed)

    @classmethod
    def seeded(cls, seed: int, profile_name: str = DEFAULT_PROFILE) -> Chaos:
        """Chaos on, with a named profile."""
        return cls(profile(profile_name), seed=seed, enabled=True)

    def _reseed(self, seed: int) -> None:
        self.seed = seed
        self._rngs = {kind: random.Random(f"{seed}/{kind}") for kind in _PROBABILITIES}
        self.counts = dict.fromkeys(COUNTED, 0)
        self.requests = 0

    # --- configuration ----------------------------------------------------------------------
    def configure(self, changes: Mapping[str, object]) -> None:
        """Apply a partial update from JSON, all or nothing.

        `profile` (a name) replaces every probability first, then single values override it;
        `seed` restarts the run (fresh random streams, counters at zero); `reset` zeroes the
        counters only. `seed` or `profile` turns chaos on unless `enabled` says otherwise.
        """
        known = {"enabled", "seed", "profile", "reset", "delay_s", *_PROBABILITIES}
        unknown = set(changes) - known
        if unknown:
            raise SandboxError(f"unknown chaos settings {sorted(unknown)}; known: {sorted(known)}")
        config = self.config
        if "profile" in changes:
            try:
                config = profile(str(changes["profile"]))
            except SandboxConfigError as exc:
                raise SandboxError(str(exc)) from None
        overrides: dict[str, object] = {
            name: _probability(name, changes[name]) for name in _PROBABILITIES if name in changes
        }
        if "delay_s" in changes:
            overrides["delay_s"] = _delay_range(changes["delay_s"])
        config = replace(config, **overrides)  # type: ignore[arg-type]  # validated above
        seed = changes.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise SandboxError(f"chaos seed must be an integer, not {seed!r}")
        enabled = changes.get("enabled", True if {"seed", "profile"} & set(changes) else None)
        if enabled is not None and not isinstance(enabled, bool):
            raise SandboxError(f"chaos enabled must be true or false, not {enabled!r}")
        with self._lock:
            self.config = config
            if seed is not None:
                self._reseed(seed)
            elif changes.get("reset"):
                self.counts = dict.fromkeys(COUNTED, 0)
                self.requests = 0
            if enabled is not None:
                self.enabled = enabled

    def to_json(self) -> dict[str, object]:
        with self._lock:
            data: dict[str, object] = {"enabled": self.enabled, "seed": self.seed}
            data.update(asdict(self.config))
            data["delay_s"] = list(self.config.delay_s)
            data["counts"] = dict(self.counts)
            data["requests"] = self.requests
            return data

    # --- decisions --------------------------------------------------------------------------
    def _hit(self, kind: str) -> bool:
        """One draw of `kind`'s stream (call with the lock held)."""
        return self._rngs[kind].random() < getattr(self.config, kind)

    def seen(self) -> None:
        """Count one request of the Numerai surface met while chaos is on."""
        with self._lock:
            self.requests += 1

    def delay(self) -> float:
        """Seconds to wait before answering; 0 for none."""
        with self._lock:
            if not self._hit("delay"):
                return 0.0
            return self._rngs["delay"].uniform(*self.config.delay_s)

    def drop(self) -> Drop | None:
        """Whether to close the connection unanswered, and whether before or after processing."""
        with self._lock:
            if not self._hit("drop"):
                return None
            return "after" if self._rngs["drop"].random() < 0.5 else "before"

    def graphql_5xx(self) -> int | None:
        """The 5xx status a GraphQL POST answers, or None."""
        with self._lock:
            return (
                self._rngs["graphql_5xx"].choice((502, 503)) if self._hit("graphql_5xx") else None
            )

    def truncate(self) -> float | None:
        """The share of a download's bytes to send before closing (0.1-0.9), or None."""
        with self._lock:
            return self._rngs["truncate"].uniform(0.1, 0.9) if self._hit("truncate") else None

    def put_fail(self) -> int | None:
        """The 5xx status an upload PUT answers, or None."""
        with self._lock:
            return self._rngs["put_fail"].choice((500, 503)) if self._hit("put_fail") else None

    def record(self, kind: str) -> None:
        """Count one injected fault."""
        with self._lock:
            self.counts[kind] += 1
