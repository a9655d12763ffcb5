"""Shared CLI output: consoles, and how an expected failure is shown (message, no traceback)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from flows.errors import NodeError

if TYPE_CHECKING:
    # Typer vendors click; TyperGroup.invoke takes typer's own click Context, not click's.
    from typer._click import Context

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


class NodesGroup(TyperGroup):
    """The root command group: an expected failure (a NodeError, from any room) is shown as its
    message on stderr with exit code 1; anything else is a bug and keeps its traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _hide_flag_types(self)

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except NodeError as exc:
            raise fail(escape(str(exc))) from None


def _hide_flag_types(command: Any) -> None:
    """Typer shows every option's type in help; for an on/off flag `<bool>` says nothing.

    The options of a command, `--help` and typer's completion flags among them, exist only once
    `get_params` builds them, so each command's `get_params` blanks its flags' type.
    """
    build = command.get_params

    def get_params(ctx: Any) -> list[Any]:
        params = build(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    command.get_params = get_params
    for child in getattr(command, "commands", {}).values():
        _hide_flag_types(child)


class ConsoleReporter:
    """Spinners and notes on stderr, so stdout stays for results."""

    def step(self, message: str) -> AbstractContextManager[object]:
        return err_console.status(message)

    def note(self, message: str) -> None:
        err_console.print(f"[yellow]{escape(message)}[/]")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False)
    return typer.Exit(code)


def settings_or_fail(factory: Callable[..., T], prefix: str, label: str, **overrides: object) -> T:
    """`factory(**overrides)`, None overrides left out; invalid values fail naming each variable."""
    from pydantic import ValidationError

    try:
        return factory(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise fail(escape(f"Invalid {label} settings: {problems}")) from None


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
