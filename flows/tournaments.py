"""Numerai's tournaments and their ids: the one place the ids 8, 11 and 12 are spelled."""

from __future__ import annotations

from enum import IntEnum


class Tournament(IntEnum):
    """A Numerai tournament, by the id Numerai's API uses."""

    CLASSIC = 8
    SIGNALS = 11
    CRYPTO = 12

    @property
    def label(self) -> str:
        """The name users know it by: `classic`, `signals` or `crypto`."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str) -> Tournament:
        """A tournament from its id (`8`) or label (`signals`); ValueError lists the valid ones."""
        text = str(value).strip().lower()
        for tournament in cls:
            if text in (str(tournament.value), tournament.label):
                return tournament
        valid = ", ".join(f"{t.label} ({t.value})" for t in cls)
        raise ValueError(f"Unknown tournament {value!r}. Valid tournaments: {valid}.")


CLASSIC, SIGNALS, CRYPTO = Tournament.CLASSIC, Tournament.SIGNALS, Tournament.CRYPTO
TOURNAMENT_HELP = ", ".join(f"{t.value} {t.label.capitalize()}" for t in Tournament)
