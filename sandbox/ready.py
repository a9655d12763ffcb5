"""The sandbox's ready file: written once it listens, read by whoever started it.

It is the one spelling of that contract: its name, and what it holds (the sandbox's URLs, keys
and models). It holds the sandbox's keys, so it is written with mode 0600 and removed on stop.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

READY_FILE = "sandbox.json"


@dataclass(frozen=True)
class SandboxReady:
    """What a parent process needs to talk to a running sandbox."""

    url: str
    public_id: str
    secret_key: str = field(repr=False)
    models: dict[str, str] = field(default_factory=dict)
    model_tournaments: dict[str, int] = field(default_factory=dict)
    yahoo_url: str | None = None
    pid: int | None = None

    def write(self, path: Path) -> None:
        """Write atomically: a reader sees the whole file or none."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> SandboxReady | None:
        """The ready file at `path`, or None while there is none (or it is not whole)."""
        try:
            raw = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(
            url=raw["url"],
            public_id=raw["public_id"],
            secret_key=raw["secret_key"],
            models=dict(raw.get("models") or {}),
            model_tournaments={k: int(v) for k, v in (raw.get("model_tournaments") or {}).items()},
            yahoo_url=raw.get("yahoo_url"),
            pid=raw.get("pid"),
        )
