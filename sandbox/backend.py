"""The sandbox's operations on its state and catalogues, shared by GraphQL, admin and runner."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flows.tournaments import CLASSIC, CRYPTO, SIGNALS
from sandbox.catalog import DatasetCatalog
from sandbox.errors import SandboxError
from sandbox.state import ModelRecord, RoundRecord, SandboxState, SubmissionRecord, iso
from sandbox.submissions import CheckedPredictions, check_classic, check_crypto, check_signals


@dataclass
class Backend:
    """State plus the datasets each tournament serves."""

    state: SandboxState
    catalogs: Mapping[int, DatasetCatalog]

    def catalog(self, tournament: int) -> DatasetCatalog:
        try:
            return self.catalogs[tournament]
        except KeyError:
            served = ", ".join(str(t) for t in sorted(self.catalogs)) or "none"
            raise SandboxError(
                f"this sandbox serves no datasets for tournament {tournament} (serves: {served})"
            ) from None

    def resolve_round(self, tournament: int, number: int | None) -> RoundRecord:
        """`None` or 0 means the current round; a round that never opened is an error."""
        current = self.state.current_round(tournament)
        if not number:
            return current
        found = self.state.round(tournament, number)
        if found is None:
            raise SandboxError(
                f"round {number} of tournament {tournament} does not exist "
                f"(the current round is {current.number})"
            )
        return found

    def data_version(self, tournament: int) -> str | None:
        """The data version a tournament serves now (what its webhook says); None if none."""
        catalog = self.catalogs.get(tournament)
        return catalog.version if catalog is not None else None

    def datasets(self, tournament: int, round_number: int | None) -> list[str]:
        rnd = self.resolve_round(tournament, round_number)
        return self.catalog(tournament).files(rnd.number)

    def dataset_path(self, tournament: int, filename: str, round_number: int | None) -> Path:
        rnd = self.resolve_round(tournament, round_number)
        catalog = self.catalog(tournament)
        path = catalog.path(filename, rnd.number)
        if path is None:
            raise SandboxError(
                f"dataset {filename!r} does not exist; available: {catalog.files(rnd.number)}"
            )
        return path

    def live_ids(self, tournament: int = CLASSIC, round_number: int | None = None) -> list[str]:
        rnd = self.resolve_round(tournament, round_number)
        return self.catalog(tournament).live_ids(rnd.number)

    def prepare(self, tournament: int = CLASSIC) -> None:
        """Generate the current round's files, if this tournament serves any."""
        if tournament in self.catalogs:
            self.catalogs[tournament].prepare(self.state.current_round(tournament).number)

    def open_round(self, tournament: int = CLASSIC, window: timedelta | None = None) -> RoundRecord:
        """Generate the next round's data, open the round (for `window`), then call every
        model's webhook."""
        if tournament in self.catalogs:
            self.catalogs[tournament].prepare(self.state.current_round(tournament).number + 1)
        opened = self.state.open_round(tournament, window)
        for model in self.webhook_models(tournament):
            self.state.fire_webhook(model.id)
        return opened

    def webhook_models(self, tournament: int) -> list[ModelRecord]:
        """The models of a tournament that have a webhook (opening a round calls each)."""
        return [m for m in self.state.models(tournament) if self.state.webhook(m.id)]

    def owned_model(self, model_id: str | None, tournament: int) -> ModelRecord:
        """The caller's model for a tournament; without an id, the only one there is."""
        if model_id is None:
            models = self.state.models(tournament)
            if len(models) != 1:
                names = [m.name for m in models]
                raise SandboxError(
                    f"modelId is required: the account has {len(models)} models in "
                    f"tournament {tournament} ({names})"
                )
            return models[0]
        model = self.state.model(model_id)
        if model is None:
            raise SandboxError(f"model {model_id} does not exist or is not yours")
        if model.tournament != tournament:
            raise SandboxError(
                f"model {model.name} ({model_id}) is in tournament {model.tournament}, "
                f"not {tournament}"
            )
        return model

    def submit(
        self,
        *,
        filename: str,
        tournament: int,
        model_id: str | None,
        trigger_id: str | None,
        source: str | None,
    ) -> SubmissionRecord:
        """Turn a PUT upload into a submission for the current round, or refuse it."""
        model = self.owned_model(model_id, tournament)
        upload = self.state.upload(filename.split("/", 1)[0])
        if upload is None or upload.model_id != model.id:
            raise SandboxError(
                f"no upload named {filename!r} for model {model.name}; ask for upload auth first"
            )
        if upload.data is None:
            raise SandboxError(
                f"the upload {filename!r} never arrived: the PUT to its upload URL failed "
                "or was not made"
            )
        now = self.state.clock()
        rnd = self.state.current_round(tournament)
        if not rnd.is_open(now):
            raise SandboxError(
                f"round {rnd.number} is closed for submissions (closed at "
                f"{iso(rnd.close_time)}); wait for the next round"
            )
        checked = self._check(upload.data, tournament, rnd.number)
        record = SubmissionRecord(
            id=str(uuid.uuid4()),
            model_id=model.id,
            model_name=model.name,
            round=rnd.number,
            tournament=tournament,
            trigger_id=trigger_id,
            filename=filename,
            row_count=checked.row_count,
            ids=checked.ids,
            inserted_at=now,
            source=source,
        )
        return self.state.add_submission(record)

    def _check(self, data: bytes, tournament: int, round_number: int) -> CheckedPredictions:
        if tournament == SIGNALS:
            catalog = self.catalogs.get(SIGNALS)
            universe = catalog.live_ids(round_number) if catalog is not None else None
            return check_signals(data, universe)
        if tournament == CRYPTO:
            return check_crypto(data, self.catalog(CRYPTO).live_ids(round_number))
        return check_classic(data, self.catalog(tournament).live_ids(round_number), round_number)


def first_effective_date(record: SubmissionRecord) -> str:
    """Signals predictions count from the next Friday's data (ISO date)."""
    day = record.inserted_at.date()
    return (day + timedelta(days=(4 - day.weekday()) % 7 or 7)).isoformat()
