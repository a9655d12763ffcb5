"""Shared CLI output: consoles, and how an expected failure is shown (message, no traceback)."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from flows.errors import NodeError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False)
    return typer.Exit(code)


class _HideExpectedTracebacks(logging.Filter):
    """Prefect logs every task failure with its traceback; expected failures need only the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], NodeError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_expected_tracebacks() -> None:
    """Install the filter on Prefect's console handlers (the API log handler keeps everything)."""
    for name in ("prefect", "prefect.task_runs", "prefect.flow_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if "Console" in type(handler).__name__ or isinstance(handler, logging.StreamHandler):
                handler.addFilter(_HideExpectedTracebacks())
