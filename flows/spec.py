"""Checks of a node's model spec that run before any download: a wrong setting fails in seconds.

A model module, a parameter, a target or a feature set that cannot work is named with the
values that would, instead of failing after the training data is downloaded with a raw error
from pyarrow or LightGBM.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from flows.errors import ConfigurationError

_LISTED = 12  # how many valid choices an error lists


def model_module(name: str) -> ModuleType:
    """Import the node's model module and check it has what a node calls."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"Cannot import the model module '{name}': {exc}") from None
    missing = [attr for attr in ("train", "predict") if not hasattr(module, attr)]
    if missing:
        raise ConfigurationError(f"The model module '{name}' has no {' or '.join(missing)}().")
    return module


def check_params(module: ModuleType, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` checked against the module's DEFAULT_PARAMS: known names, values of their type.

    A module without DEFAULT_PARAMS takes any parameter. Integers are accepted where a float is
    expected. Returns the parameters with numbers given as text converted ("300" -> 300).
    """
    defaults: Mapping[str, Any] | None = getattr(module, "DEFAULT_PARAMS", None)
    if defaults is None:
        return dict(params)
    checked = {}
    for name, value in params.items():
        if name not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigurationError(
                f"The model {module.__name__} has no parameter '{name}'. Its parameters: {known}."
            )
        checked[name] = _typed(module.__name__, name, value, defaults[name])
    return checked


def _typed(model: str, name: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif isinstance(value, kind):
        return value
    else:
        return value  # a type the check does not know: the model decides
    raise ConfigurationError(
        f"Parameter '{name}' of {model} must be {_article(kind.__name__)} (its default is "
        f"{default!r}); got {value!r}."
    )


def _article(kind: str) -> str:
    names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}
    return names.get(kind, f"a {kind}")


def check_choice(what: str, value: str, choices: list[str], where: str) -> None:
    """Refuse `value` unless it is one of `choices`, listing some of them."""
    if value in choices:
        return
    shown = sorted(choices)[:_LISTED]
    more = f" (and {len(choices) - _LISTED} more)" if len(choices) > _LISTED else ""
    raise ConfigurationError(
        f"{where} has no {what} '{value}'; choose one of: {', '.join(shown)}{more}."
    )
