"""The fleet: nodes.yaml declares the Numerai models, a few lines each; prefect.yaml's node and
training deployments are generated from it (deployments/fleet_yaml.py writes them).

    defaults:   what every node and every training shares (pool, round-day training, schedules)
    pools:      the type of each work pool that is not a process pool (for size presets)
    specs:      model specs, written once (`extends:` another spec to change a field or two)
    nodes:      one line per Numerai model: `my_model: {spec: lgbm-small}`

A node's name is its Numerai model's name unless it says otherwise (`numerai_model:`); its
deployment, its webhook event's resource (`numerai.node.<name>`) and its runs all take that name.
Nodes that share a spec share its trained model: N nodes over K specs train K times per data
version, on the training deployment `train-<spec>` of each Classic spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deployments.events import EVENT_NAME, node_resource_id
from deployments.presets import job_variables, known_preset
from flows.command import CommandSpec
from flows.entrypoints import (
    CRYPTO_FLOW,
    SIGNALS_FLOW,
    TOURNAMENT_FLOW,
    TRAINING_FLOW,
    NodeFlow,
)
from flows.errors import ConfigurationError
from flows.events import NODE_NAME_PATTERN, NODE_TAG
from flows.memory import SIZE_TAG_PREFIX

DECLARATIONS = Path("nodes.yaml")
TRAINING_TAG = "numerai-training"
# Numerai opens rounds at 13:00 UTC, Tuesday to Saturday: the fallback run for a lost webhook.
FALLBACK_CRON = "30 13 * * 2-6"
TRAINING_CRON = "0 6 * * *"
PoolType = Literal["process", "ecs", "cloud-run-v2"]
_FLOWS = {"classic": TOURNAMENT_FLOW, "signals": SIGNALS_FLOW, "crypto": CRYPTO_FLOW}
# What a node run takes from Numerai's webhook event; `| default(none)` keeps a missing field
# from failing the automation (and dropping the run).
_SPEC_KEYS = {"extends", "tournament", "training"}  # what a spec has besides node settings
TRIGGER_PARAMETERS = {
    "trigger_id": "{{ event.payload.triggerId | default(none) }}",
    "round_number": "{{ event.payload.roundNumber | default(none) }}",
}


class FleetError(ConfigurationError):
    """nodes.yaml is missing or declares something that cannot work; the message says what."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Training(_Strict):
    """Where and when a spec trains ahead of round day."""

    pool: str | None = Field(None, description="Work pool of the training runs (a big machine).")
    size: str | None = Field(None, description="Size preset on an ECS or Cloud Run pool.")
    schedule: str | None = Field(
        TRAINING_CRON,
        description="Cron (UTC) of the training runs. A run ends in seconds when the model of "
        "this spec, data version and code is stored already, so a daily run picks up a new "
        "data release by itself. null: by hand only (`numerai-nodes train SPEC`).",
    )


class Defaults(_Strict):
    """What every node and training shares unless it says otherwise."""

    pool: str = Field("local", description="Work pool of the round-day nodes.")
    size: str | None = Field(None, description="Size preset of the round-day nodes.")
    train: bool = Field(
        False,
        description="May a node train on round day when its spec's model is not stored? "
        "Off (the default): it predicts with the family's last good model, or fails at once.",
    )
    schedule: str | None = Field(
        FALLBACK_CRON, description="Fallback run (cron, UTC) for a lost webhook; null: none."
    )
    training: Training = Field(default_factory=Training)


class NodeDeclaration(_Strict):
    """One Numerai model: its spec and where it runs."""

    spec: str | dict[str, Any] = Field(description="A spec's name, or a spec written inline.")
    numerai_model: str | None = Field(
        None, description="Its name on numer.ai; default: the node's."
    )
    pool: str | None = None
    size: str | None = None
    train: bool | None = None
    schedule: str | None = Field(None, description="Overrides defaults.schedule ('none': off).")
    description: str | None = None


class Fleet(_Strict):
    """nodes.yaml, read."""

    defaults: Defaults = Field(default_factory=Defaults)
    pools: dict[str, PoolType] = Field(default_factory=dict)
    specs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    nodes: dict[str, NodeDeclaration] = Field(default_factory=dict)

    @field_validator("nodes", "specs")
    @classmethod
    def _names(cls, value: dict) -> dict:
        for name in value:
            if not NODE_NAME_PATTERN.fullmatch(str(name)):
                raise ValueError(
                    f"'{name}' is no valid name: lowercase letters, digits, '-' and '_', "
                    "starting with a letter or digit (Numerai's model names fit)."
                )
        return value


class Spec(BaseModel):
    """A spec resolved: its family name, tournament, node settings and training."""

    name: str
    flow: NodeFlow
    settings: dict[str, Any]
    training: Training


class ResolvedNode(BaseModel):
    """A node as it will be deployed."""

    name: str
    numerai_model: str
    spec: Spec
    pool: str
    size: str | None
    train: bool
    schedule: str | None
    description: str


def read_fleet(path: Path = DECLARATIONS) -> Fleet:
    """nodes.yaml, checked; a FleetError names what is wrong and where."""
    if not path.exists():
        raise FleetError(
            f"No {path} here. Run numerai-nodes from the project directory, whose nodes.yaml "
            "declares the Numerai models (`numerai-nodes node add` writes it)."
        )
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FleetError(f"{path} is not valid YAML: {exc}") from None
    try:
        return Fleet.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise FleetError(f"{path} declares something that cannot work: {problems}") from None


def resolve(fleet: Fleet) -> list[ResolvedNode]:
    """Every node with its spec, pool and settings resolved and checked."""
    specs = {name: _spec(fleet, name, []) for name in fleet.specs}
    nodes: list[ResolvedNode] = []
    models: dict[str, str] = {}
    for name, node in fleet.nodes.items():
        if isinstance(node.spec, str):
            spec = specs[_known(fleet, node.spec, name)]
        else:  # written inline: its family is the node's name
            spec = _resolved_spec(fleet, name, dict(node.spec))
        model = node.numerai_model or name
        if model in models:
            raise FleetError(
                f"Nodes '{models[model]}' and '{name}' both submit as Numerai model '{model}': "
                "a model has one webhook, so one node. Give one of them its own numerai_model."
            )
        models[model] = name
        train = fleet.defaults.train if node.train is None else node.train
        if not train and spec.flow is not TOURNAMENT_FLOW:
            raise FleetError(
                f"Node '{name}' is a {spec.flow.tournament.label.capitalize()} node with "
                "`train: false`: Signals and Crypto models train in the round for now (training "
                "ahead is built for Classic specs). Set train: true."
            )
        pool = node.pool or fleet.defaults.pool
        size = node.size or fleet.defaults.size
        _sized(fleet, pool, size, f"node '{name}'")
        schedule = fleet.defaults.schedule if node.schedule is None else node.schedule
        nodes.append(
            ResolvedNode(
                name=name,
                numerai_model=model,
                spec=spec,
                pool=pool,
                size=size,
                train=train,
                schedule=None if schedule in ("none", "") else schedule,
                description=node.description
                or f"Numerai model {model} ({spec.flow.tournament.label}, spec {spec.name}).",
            )
        )
    return nodes


def trained_specs(fleet: Fleet, nodes: list[ResolvedNode]) -> list[Spec]:
    """The Classic specs the nodes use, each once: one training deployment each."""
    seen: dict[str, Spec] = {}
    for node in nodes:
        if node.spec.flow is TOURNAMENT_FLOW:
            seen.setdefault(node.spec.name, node.spec)
    for spec in seen.values():
        _sized(fleet, training_pool(fleet, spec), spec.training.size, f"spec '{spec.name}'")
    return list(seen.values())


def find_spec(fleet: Fleet, name: str) -> Spec:
    """Spec `name`: a spec of `specs:`, or the inline spec of node `name`."""
    for node in resolve(fleet):
        if node.spec.name == name:
            return node.spec
    if name in fleet.specs:
        return _spec(fleet, name, [])
    inline = [n for n, node in fleet.nodes.items() if not isinstance(node.spec, str)]
    known = ", ".join([*fleet.specs, *inline]) or "none"
    raise FleetError(f"nodes.yaml has no spec '{name}' (specs: {known}).")


def training_pool(fleet: Fleet, spec: Spec) -> str:
    return spec.training.pool or fleet.defaults.training.pool or fleet.defaults.pool


def _known(fleet: Fleet, spec: str, node: str) -> str:
    if spec not in fleet.specs:
        known = ", ".join(fleet.specs) or "none"
        raise FleetError(
            f"Node '{node}' uses spec '{spec}', which nodes.yaml lacks (specs: {known})."
        )
    return spec


def _spec(fleet: Fleet, name: str, chain: list[str]) -> Spec:
    """Spec `name` with what it extends filled in."""
    if name in chain:
        raise FleetError(f"Specs extend each other in a circle: {' -> '.join([*chain, name])}.")
    fields = dict(fleet.specs[name])
    parent = fields.pop("extends", None)
    if parent is not None:
        base = _spec(fleet, _known_parent(fleet, parent, name), [*chain, name])
        inherited = base.settings | {"tournament": base.flow.tournament.label}
        if "command" in fields or "model" in fields:  # the child's model replaces the parent's
            inherited = {k: v for k, v in inherited.items() if k not in ("command", "model")}
        fields = _merged(inherited, fields)
        if "training" not in fields and base.training != fleet.defaults.training:
            fields["training"] = base.training.model_dump(exclude_unset=True)
    return _resolved_spec(fleet, name, fields)


def _known_parent(fleet: Fleet, parent: str, child: str) -> str:
    if parent not in fleet.specs:
        raise FleetError(f"Spec '{child}' extends '{parent}', which nodes.yaml lacks.")
    return parent


def _merged(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` over `base`; `params` merge key by key."""
    merged = {**base, **fields}
    if isinstance(base.get("params"), dict) and isinstance(fields.get("params"), dict):
        merged["params"] = {**base["params"], **fields["params"]}
    return merged


def _resolved_spec(fleet: Fleet, name: str, fields: dict[str, Any]) -> Spec:
    label = fields.pop("tournament", "classic")
    flow = _FLOWS.get(str(label))
    if flow is None:
        raise FleetError(
            f"Spec '{name}' has tournament '{label}'; nodes.yaml knows {', '.join(_FLOWS)}."
        )
    training = {**fleet.defaults.training.model_dump(), **(fields.pop("training", None) or {})}
    try:
        checked_training = Training.model_validate(training)
    except ValidationError as exc:
        raise FleetError(f"Spec '{name}' has a training section that cannot work: {exc}") from None
    if "command" in fields:
        _check_command(name, flow, fields)
    allowed = node_fields(flow)
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise FleetError(
            f"Spec '{name}' has no setting {', '.join(map(repr, unknown))}; a "
            f"{flow.tournament.label} spec takes: {', '.join(sorted(allowed | _SPEC_KEYS))}."
        )
    return Spec(name=name, flow=flow, settings=fields, training=checked_training)


def _check_command(name: str, flow: NodeFlow, fields: dict[str, Any]) -> None:
    """A command model: Classic only, instead of `model:`, with a command spec that can work."""
    if flow is not TOURNAMENT_FLOW:
        raise FleetError(
            f"Spec '{name}' is a {flow.tournament.label} spec with a `command:`: command "
            "models are built for Classic specs only, for now."
        )
    if "model" in fields:
        raise FleetError(
            f"Spec '{name}' gives both `model:` and `command:`: its model is a Python module "
            "or a program, not both. Keep one."
        )
    try:
        CommandSpec.model_validate(fields["command"])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'command'}: {error['msg']}"
            for error in exc.errors()
        )
        raise FleetError(f"Spec '{name}' has a command that cannot work: {problems}") from None


def node_fields(flow: NodeFlow) -> set[str]:
    """The settings a spec may set for a node of `flow` (the node's settings, less its identity)."""
    shared = {"params", "data_version", "target", "score_validation", "upload"}
    if flow is TOURNAMENT_FLOW:
        return shared | {"model", "command", "feature_set"}
    if flow is CRYPTO_FLOW:  # Numerai Crypto has no validation data to score
        return (shared - {"score_validation"}) | {"symbol_overrides", "price_retries"}
    return shared | {"ticker_overrides", "price_retries"}


def _sized(fleet: Fleet, pool: str, size: str | None, who: str) -> None:
    if size is None:
        return
    try:
        known_preset(size)
    except ConfigurationError as exc:
        raise FleetError(f"{who.capitalize()}: {exc}") from None
    if fleet.pools.get(pool, "process") == "process":
        raise FleetError(
            f"{who.capitalize()} asks for size {size} on pool '{pool}', a process pool, which "
            "runs on this machine at its size. Sizes apply to ECS and Cloud Run pools: name "
            f"the pool's type under `pools:` (e.g. `{pool}: ecs`)."
        )


def node_parameters(node: ResolvedNode) -> dict[str, Any]:
    """The node flow's `node` parameter."""
    parameters: dict[str, Any] = {"name": node.name, "numerai_model": node.numerai_model}
    if node.spec.flow is TOURNAMENT_FLOW:
        parameters |= {"spec": node.spec.name, "train": node.train}
    return parameters | node.spec.settings


def spec_parameters(spec: Spec) -> dict[str, Any]:
    """The training flow's `spec` parameter."""
    fields = ("model", "command", "params", "data_version", "feature_set", "target")
    return {"name": spec.name} | {k: v for k, v in spec.settings.items() if k in fields}


def deployments(fleet: Fleet) -> list[dict[str, Any]]:
    """prefect.yaml's deployment entries for the fleet: each node, then each training."""
    nodes = resolve(fleet)
    entries = [_node_deployment(fleet, node) for node in nodes]
    entries += [_training_deployment(fleet, spec) for spec in trained_specs(fleet, nodes)]
    return entries


def _pool(fleet: Fleet, pool: str, size: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": pool, "work_queue_name": "default"}
    if size is not None:
        entry["job_variables"] = job_variables(size, fleet.pools[pool])
    return entry


def _size_tag(size: str | None) -> list[str]:
    """`size:<preset>`: the runs' machine size, named by training's out-of-memory message."""
    return [f"{SIZE_TAG_PREFIX}{size}"] if size else []


def _node_deployment(fleet: Fleet, node: ResolvedNode) -> dict[str, Any]:
    flow = node.spec.flow
    entry: dict[str, Any] = {
        "name": node.name,
        "description": node.description,
        "entrypoint": flow.entrypoint,
        "work_pool": _pool(fleet, node.pool, node.size),
        "tags": [
            NODE_TAG,
            f"numerai-model:{node.numerai_model}",
            f"spec:{node.spec.name}",
            *_size_tag(node.size),
        ],
        # The same node never runs twice at once; later runs wait their turn.
        "concurrency_limit": 1,
        "parameters": {"node": node_parameters(node)},
        "triggers": [
            {
                "type": "event",
                "name": f"{node.name}: run on Numerai's webhook",
                "enabled": True,
                "match": {"prefect.resource.id": node_resource_id(node.name)},
                "expect": [EVENT_NAME],
                "parameters": TRIGGER_PARAMETERS,
            }
        ],
    }
    if node.schedule:
        entry["schedules"] = [{"cron": node.schedule, "timezone": "UTC", "active": True}]
    return entry


def _training_deployment(fleet: Fleet, spec: Spec) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": training_deployment(spec.name),
        "description": f"Trains the spec {spec.name} into the model store ahead of round day.",
        "entrypoint": TRAINING_FLOW.entrypoint,
        "work_pool": _pool(fleet, training_pool(fleet, spec), spec.training.size),
        "tags": [TRAINING_TAG, f"spec:{spec.name}", *_size_tag(spec.training.size)],
        "concurrency_limit": 1,
        "parameters": {"spec": spec_parameters(spec)},
    }
    if spec.training.schedule:
        entry["schedules"] = [{"cron": spec.training.schedule, "timezone": "UTC", "active": True}]
    return entry


def training_deployment(spec: str) -> str:
    """The training deployment's name of spec `spec`."""
    return f"train-{spec}"
