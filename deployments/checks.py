"""One diagnosis of `doctor`: what was checked, its status, what was seen, and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "fail", "warn"]


@dataclass
class Check:
    """One diagnosis: what was checked, its status, what was seen, and the fix when it failed."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
