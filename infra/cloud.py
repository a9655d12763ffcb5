"""What every cloud place shares: the error root, the Numerai keys it stores, the status shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import AliasChoices, SecretStr

from flows.errors import NodeError
from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV, NodesSettings, load_settings
from infra.pools import delete_block, delete_pool


class CloudError(NodeError):
    """An expected failure of a cloud place (AWS, GCP); the message names the cause and the fix."""


@dataclass(frozen=True)
class NumeraiKeys:
    """The Numerai API keys, kept as SecretStr so no repr, log or exception shows them."""

    public_id: SecretStr
    secret_key: SecretStr

    def by_env_name(self) -> dict[str, SecretStr]:
        """Each key under the environment variable a node reads it from."""
        return {PUBLIC_ID_ENV: self.public_id, SECRET_KEY_ENV: self.secret_key}


def key_env_names() -> tuple[str, ...]:
    """Every environment variable the settings read a key from: the names and their aliases."""
    names: list[str] = []
    for name in ("public_id", "secret_key"):
        alias = NodesSettings.model_fields[name].validation_alias
        if isinstance(alias, AliasChoices):
            names += [choice for choice in alias.choices if isinstance(choice, str)]
    return tuple(dict.fromkeys([PUBLIC_ID_ENV, SECRET_KEY_ENV, *names]))


class KeysMissing(CloudError, LookupError):
    """`up` needs the Numerai keys, and neither the settings nor a prompt gave them."""


def keys_from_settings(ask: Callable[[str], str] | None = None) -> NumeraiKeys:
    """The keys from the settings (the environment or `.env`), a missing one from `ask(label)`
    when given (a hidden prompt in a terminal)."""
    settings = load_settings()
    public_id = settings.public_id or _asked(ask, "Numerai public id")
    secret_key = settings.secret_key or _asked(ask, "Numerai secret key")
    if not (public_id and secret_key):
        raise KeysMissing(
            f"Numerai keys are needed: set {PUBLIC_ID_ENV} and {SECRET_KEY_ENV} (in the "
            "environment or .env), run in a terminal to be prompted, or pass --skip-keys to keep "
            "the stored keys as they are."
        )
    return NumeraiKeys(public_id, secret_key)


def _asked(ask: Callable[[str], str] | None, label: str) -> SecretStr | None:
    return SecretStr(ask(label).strip()) if ask is not None else None


@dataclass(frozen=True)
class PlaceStatus:
    """A place's stack and its work pool, the same shape on every cloud."""

    place: str
    stack: str  # which stack, and where
    exists: bool
    stack_status: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    pool_name: str = ""
    pool_exists: bool = False
    pool_matches: bool = False
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outputs": dict(self.outputs), "problems": list(self.problems)}

    def summary(self) -> list[str]:
        """The status as lines of text, for people (`to_json` is for machines)."""
        if not self.exists:
            return list(self.problems) or [f"{self.stack} does not exist"]
        lines = [f"{self.stack}: {self.stack_status}"]
        lines += [f"  {name} = {value}" for name, value in sorted(self.outputs.items())]
        pool = (
            "missing"
            if not self.pool_exists
            else "matches the stack"
            if self.pool_matches
            else "does not match the stack"
        )
        lines.append(f"work pool {self.pool_name}: {pool}")
        return lines + [f"problem: {problem}" for problem in self.problems]


def stack_status(
    place: str,
    stack: str,
    *,
    pool_name: str,
    pool_template: dict[str, Any] | None,
    stack_state: str,
    outputs: Mapping[str, str],
    problems: list[str],
    mismatches: Callable[[dict[str, Any]], list[str]] | None,
) -> PlaceStatus:
    """The status of a stack that exists: its own `problems`, plus the pool's.

    `mismatches` compares the pool's template with the stack (None: the stack is not complete
    enough to compare).
    """
    pool = f"work pool {pool_name}"
    found: list[str] = []
    if pool_template is None:
        problems = [*problems, f"{pool} does not exist"]
    elif mismatches is not None:
        found = mismatches(pool_template)
        problems = [*problems, *(f"{pool}: {mismatch}" for mismatch in found)]
    return PlaceStatus(
        place,
        stack,
        exists=True,
        stack_status=stack_state,
        outputs=outputs,
        pool_name=pool_name,
        pool_exists=pool_template is not None,
        pool_matches=pool_template is not None and mismatches is not None and not found,
        problems=tuple(problems),
    )


def missing_stack_status(
    place: str, stack: str, *, pool_name: str, pool_exists: bool, problem: str
) -> PlaceStatus:
    """The status of a place whose stack does not exist (yet)."""
    return PlaceStatus(
        place,
        stack,
        exists=False,
        pool_name=pool_name,
        pool_exists=pool_exists,
        problems=(problem,),
    )


def remove_pool_and_block(
    pool_name: str, pool_type: str, block_name: str, block_type: str
) -> list[str]:
    """Delete a place's work pool and its result-storage block; what was done, as lines."""
    done = []
    if delete_pool(pool_name, pool_type):
        done.append(f"deleted work pool {pool_name}")
    if delete_block(block_name, block_type):
        done.append(f"deleted block {block_type}/{block_name}")
    return done
