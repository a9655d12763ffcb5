"""How the local stack tells a user what it is doing (the CLI shows spinners; tests nothing)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class Reporter(Protocol):
    """Steps (a spinner while they run) and notes."""

    def step(self, message: str) -> AbstractContextManager[object]: ...

    def note(self, message: str) -> None: ...


class SilentReporter:
    """A Reporter that shows nothing."""

    def step(self, message: str) -> AbstractContextManager[object]:
        return nullcontext()

    def note(self, message: str) -> None:
        pass
