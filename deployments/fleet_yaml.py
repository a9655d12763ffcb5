"""Writing the fleet: nodes.yaml's node lines, and the deployments it generates in prefect.yaml.

Both files keep their comments: a node is added or removed as lines of nodes.yaml's `nodes:`
section, and prefect.yaml is rewritten only below its generated mark, at the end of its
`deployments:` list (what is above, such as the round watchdog, is the user's). Writes are
atomic: a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deployments.catalogue import CATALOGUE
from deployments.fleet import DECLARATIONS, FleetError, deployments, read_fleet
from flows import files

GENERATED_MARK = (
    "  # ---- Generated from nodes.yaml by `numerai-nodes node sync` (node add and remove run it"
    " too): edit nodes.yaml, not the lines below. ----"
)
_SECTION = re.compile(r"^nodes:\s*(#.*)?$")
_TOP_LEVEL = re.compile(r"^[^\s#]")


def render(entries: list[dict[str, Any]]) -> str:
    """The generated deployment entries as prefect.yaml lines, under the mark."""
    blocks = []
    for entry in entries:
        text = yaml.safe_dump([entry], sort_keys=False, width=100, allow_unicode=True)
        blocks.append("".join(f"  {line}\n" if line else "\n" for line in text.splitlines()))
    return GENERATED_MARK + "\n" + "\n".join(blocks)


def generated(catalogue: Path = CATALOGUE, declarations: Path = DECLARATIONS) -> str:
    """prefect.yaml's text with the generated part as nodes.yaml makes it now."""
    if not catalogue.exists():
        raise FleetError(f"No {catalogue} here: run numerai-nodes from the project directory.")
    text = catalogue.read_text()
    region = render(deployments(read_fleet(declarations)))
    at = text.find(GENERATED_MARK)
    if at < 0:
        raise FleetError(
            f"{catalogue} has no generated part: its `deployments:` list must end with the line\n"
            f"{GENERATED_MARK}\nbelow which nodes.yaml's deployments are written."
        )
    return text[:at] + region


def sync(catalogue: Path = CATALOGUE, declarations: Path = DECLARATIONS) -> bool:
    """Write nodes.yaml's deployments into prefect.yaml; whether anything changed."""
    new = generated(catalogue, declarations)
    if new == catalogue.read_text():
        return False
    files.write_text(catalogue, new)
    return True


def in_step(catalogue: Path = CATALOGUE, declarations: Path = DECLARATIONS) -> bool:
    """Whether prefect.yaml holds what nodes.yaml declares."""
    return generated(catalogue, declarations) == catalogue.read_text()


def add_node(name: str, fields: dict[str, Any], declarations: Path = DECLARATIONS) -> None:
    """Add node `name` to nodes.yaml's `nodes:` section, as one line; refused if it exists or
    would not resolve (the file is then left as it was)."""
    fleet = read_fleet(declarations)
    if name in fleet.nodes:
        raise FleetError(f"nodes.yaml already declares node '{name}'; remove it first.")
    lines = declarations.read_text().splitlines()
    start, end = _section(lines, declarations)
    entry = yaml.safe_dump({name: fields}, default_flow_style=True, sort_keys=False, width=1000)
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # after the section's last node, before its trailing blank lines
    lines.insert(end, f"  {entry.strip()[1:-1]}")
    _write_checked(declarations, lines)


def remove_node(name: str, declarations: Path = DECLARATIONS) -> None:
    """Remove node `name`'s lines from nodes.yaml."""
    fleet = read_fleet(declarations)
    if name not in fleet.nodes:
        known = ", ".join(fleet.nodes) or "none"
        raise FleetError(f"nodes.yaml declares no node '{name}' (nodes: {known}).")
    lines = declarations.read_text().splitlines()
    start, end = _section(lines, declarations)
    head = re.compile(rf"^\s+['\"]?{re.escape(name)}['\"]?\s*:")
    for at in range(start + 1, end):
        if head.match(lines[at]):
            indent = len(lines[at]) - len(lines[at].lstrip())
            stop = at + 1
            while stop < end and (
                not lines[stop].strip() or len(lines[stop]) - len(lines[stop].lstrip()) > indent
            ):
                stop += 1
            del lines[at:stop]
            _write_checked(declarations, lines)
            return
    raise FleetError(
        f"Node '{name}' is in nodes.yaml but not as a line of its own under `nodes:`; remove "
        "it by hand."
    )


def _section(lines: list[str], declarations: Path) -> tuple[int, int]:
    """The `nodes:` section: its header's index and the index after its last line."""
    for start, line in enumerate(lines):
        if _SECTION.match(line):
            end = start + 1
            while end < len(lines) and not _TOP_LEVEL.match(lines[end]):
                end += 1
            return start, end
    raise FleetError(f"{declarations} has no `nodes:` section (a line `nodes:` of its own).")


def _write_checked(declarations: Path, lines: list[str]) -> None:
    before = declarations.read_text()
    files.write_text(declarations, "\n".join(lines) + "\n")
    try:
        deployments(read_fleet(declarations))
    except FleetError:
        files.write_text(declarations, before)
        raise
