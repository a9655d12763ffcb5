"""A thin, typed layer over numerapi: one place that talks to Numerai, with clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numerapi
import numerapi.utils
from dateutil.parser import isoparse

from flows import download
from flows.errors import (
    DatasetNotFound,
    InvalidKeys,
    MissingKeys,
    NumeraiApiError,
    NumeraiUnavailable,
    RoundClosed,
    UnknownModel,
    UploadRejected,
)
from flows.settings import load_settings
from flows.tournaments import CLASSIC, CRYPTO, SIGNALS

# How Numerai's API says a dataset file does not exist.
_NOT_FOUND = ("not found", "no such", "does not exist")

# Every call to Numerai has a deadline, so a hung peer costs a retry, not the round.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class RoundInfo:
    """The round a node predicts for."""

    number: int
    open_time: datetime | None
    close_staking_time: datetime | None

    def is_open(self, now: datetime) -> bool:
        return self.close_staking_time is None or now < self.close_staking_time


@dataclass(frozen=True)
class Submission:
    """A submission as Numerai lists it."""

    id: str
    filename: str
    round: int | None
    trigger_id: str | None
    inserted_at: str | None


@dataclass(frozen=True)
class RoundPerformance:
    """A model's scores for one round, as Numerai reports them: each metric's latest daily
    score (none until the round has closed a day), final once the round resolves."""

    round: int
    resolved: bool
    day: int | None
    scores: dict[str, float]


class _BoundApi:
    """numerapi bound to one endpoint and a timeout, failing fast with this project's errors.

    numerapi sends its GraphQL calls to a module global and with no timeout, so a hung call
    would hold a node forever; this sends numerapi's own request (same body and headers, through
    numerapi's HTTP helper) to this client's URL, with a timeout and one try: the Prefect task
    that called it owns the retries.
    """

    url: str
    timeout: tuple[float, float]

    def raw_query(self, query, variables=None, authorization=False, **kwargs):
        headers = {"Content-type": "application/json", "Accept": "application/json"}
        if authorization:
            token = getattr(self, "token", None)  # numerapi's Api holds the keys
            if not token:
                raise MissingKeys()
            public_id, secret_key = token
            headers["Authorization"] = f"Token {public_id}${secret_key}"
        body = {"query": query, "variables": variables}
        result = numerapi.utils.post_with_err_handling(
            self.url, body, headers, timeout=self.timeout, retries=1
        )
        # numerapi's helper logs a failed request and returns None (or {}): no answer.
        if not isinstance(result, dict) or ("data" not in result and not result.get("errors")):
            raise NumeraiUnavailable(
                f"Numerai's API at {self.url} did not answer in time (or not at all). Check the "
                "network, or NUMERAI_API_URL if you set it."
            )
        if result.get("errors"):
            raise _translate(str(self._handle_call_error(result["errors"])), self.url)
        return result


class _Classic(_BoundApi, numerapi.NumerAPI):
    pass


class _Signals(_BoundApi, numerapi.SignalsAPI):
    pass


class _Crypto(_BoundApi, numerapi.CryptoAPI):
    """Crypto lists and uploads as Classic does, with tournament 12 (numerapi's CryptoAPI)."""


class NumeraiClient:
    """What a node needs from Numerai: rounds, datasets, models, submissions and webhooks."""

    def __init__(
        self,
        api_url: str,
        public_id: str | None = None,
        secret_key: str | None = None,
        *,
        tournament: int = CLASSIC,
        show_progress: bool = False,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ):
        self.url = api_url
        self.tournament = tournament
        self.has_keys = bool(public_id and secret_key)
        api_class = (
            _Signals if tournament == SIGNALS else _Crypto if tournament == CRYPTO else _Classic
        )
        api = api_class(verbosity="WARNING", show_progress_bars=show_progress)
        api.url = api_url
        api.timeout = (timeout.connect or 10.0, timeout.read or 60.0)
        self._timeout = timeout
        # numerapi falls back to the environment for missing keys; the caller decided already.
        if public_id and secret_key:
            api.token = (public_id, secret_key)
        else:
            # numerapi sets None itself, but mypy infers its `token` from a tuple assignment.
            api.token = None  # type: ignore[assignment]
        self._api = api

    # Rounds and data -------------------------------------------------------------------------

    def current_round(self) -> RoundInfo:
        query = """query($tournament: Int!) {
            rounds(tournament: $tournament, number: 0) { number openTime closeStakingTime }
        }"""
        rounds = self._api.raw_query(query, {"tournament": self.tournament})["data"]["rounds"]
        if not rounds or rounds[0] is None:
            raise RoundClosed("Numerai has no open round right now; try again when one opens.")
        found = rounds[0]
        return RoundInfo(
            number=int(found["number"]),
            open_time=_parse_time(found.get("openTime")),
            close_staking_time=_parse_time(found.get("closeStakingTime")),
        )

    def list_datasets(self, round_number: int | None = None) -> list[str]:
        return list(self._api.list_datasets(round_number))

    def dataset_url(self, filename: str, round_number: int | None = None) -> str:
        """Where Numerai serves `filename` (for `round_number`, else the current round)."""
        query = """query($filename: String!, $round: Int, $tournament: Int) {
            dataset(filename: $filename, round: $round, tournament: $tournament)
        }"""
        variables = {"filename": filename, "round": round_number, "tournament": self.tournament}
        try:
            url = self._api.raw_query(query, variables)["data"]["dataset"]
        except NumeraiApiError as exc:
            if any(words in str(exc).lower() for words in _NOT_FOUND):
                raise DatasetNotFound(self._not_served(filename)) from None
            raise
        if not url:
            raise DatasetNotFound(f"Numerai does not serve '{filename}' right now.")
        return str(url)

    def served_versions(self) -> list[str]:
        """The data versions Numerai lists now (e.g. v5.0, v5.2, signals/v2.0), oldest first."""
        return sorted(
            {name.rsplit("/", 1)[0] for name in self.list_datasets() if "/" in name},
            key=version_key,
        )

    def _not_served(self, filename: str) -> str:
        version = filename.rsplit("/", 1)[0] if "/" in filename else None
        try:
            served = self.served_versions()
        except Exception:  # the listing is only a hint; the answer is that the file is missing
            served = []
        if version is not None and served and version not in served:
            return (
                f"Numerai serves no data version '{version}'. Set the node's data_version to "
                f"one it serves: {', '.join(served)}."
            )
        return f"Numerai does not serve '{filename}'. Check the node's data_version" + (
            f" (served: {', '.join(served)})." if served else "."
        )

    def download(self, filename: str, dest: Path, round_number: int | None = None) -> int:
        """Download one dataset file to `dest` (resumable, checked; call it under dest's lock)."""
        url = self.dataset_url(filename, round_number)
        return download.fetch(url, dest, timeout=self._timeout)

    def served_size(self, filename: str, round_number: int | None = None) -> int | None:
        """The size of `filename` as Numerai serves it now (read from the answer's headers)."""
        url = self.dataset_url(filename, round_number)
        return download.served_size(url, timeout=self._timeout)

    # Models and submissions ------------------------------------------------------------------

    def models(self) -> dict[str, str]:
        """Model name to model id, for this tournament."""
        self._require_keys("Listing your models")
        return self._api.get_models(self.tournament)

    def model_id(self, name: str) -> str:
        models = self.models()
        if name not in models:
            known = ", ".join(sorted(models)) or "none"
            raise UnknownModel(
                f"Your Numerai account has no model named '{name}' in this tournament "
                f"(models found: {known}). Fix the node's numerai_model setting."
            )
        return models[name]

    def submissions(self, model_id: str) -> list[Submission]:
        self._require_keys("Reading submissions")
        query = """query($modelId: String) {
            submissions(modelId: $modelId) {
                id filename insertedAt triggerId round { number tournament }
            }
        }"""
        raw = self._api.raw_query(query, {"modelId": model_id}, authorization=True)
        found = raw["data"]["submissions"] or []
        return [
            Submission(
                id=item["id"],
                filename=item.get("filename") or "",
                round=(item.get("round") or {}).get("number"),
                trigger_id=item.get("triggerId"),
                inserted_at=item.get("insertedAt"),
            )
            for item in found
        ]

    def upload_file(self, path: Path, model_id: str) -> str:
        """PUT a predictions file where Numerai takes it from; returns the name Numerai gave it.

        Numerai records nothing until `create_submission` names the file, so uploading again
        (a retry) is harmless.
        """
        self._require_keys("Uploading predictions")
        endpoint = (
            "submissionUploadSignalsAuth"
            if self.tournament == SIGNALS
            else "submission_upload_auth"
        )
        auth = self._api._upload_auth(endpoint, str(path), self.tournament, model_id)
        self._put(auth["url"], path)
        return str(auth["filename"])

    def create_submission(self, filename: str, model_id: str, trigger_id: str | None) -> str:
        """Make an uploaded file the model's submission for the round; returns its id."""
        self._require_keys("Submitting predictions")
        arguments: dict[str, str | int | None] = {
            "filename": filename,
            "modelId": model_id,
            "triggerId": trigger_id,
            "dataDatestamp": None,
        }
        if self.tournament == SIGNALS:
            mutation = """mutation($filename: String!, $modelId: String, $triggerId: String,
                                  $dataDatestamp: Int) {
                createSignalsSubmission(filename: $filename, modelId: $modelId,
                    triggerId: $triggerId, source: "numerai-nodes",
                    dataDatestamp: $dataDatestamp) { id firstEffectiveDate }
            }"""
            key = "createSignalsSubmission"
        else:
            mutation = """mutation($filename: String!, $tournament: Int!, $modelId: String,
                                  $triggerId: String, $dataDatestamp: Int) {
                create_submission(filename: $filename, tournament: $tournament,
                    modelId: $modelId, triggerId: $triggerId, source: "numerai-nodes",
                    dataDatestamp: $dataDatestamp) { id }
            }"""
            arguments["tournament"] = self.tournament
            key = "create_submission"
        created = self._api.raw_query(mutation, arguments, authorization=True)
        return created["data"][key]["id"]

    def round_performances(self, model_id: str) -> list[RoundPerformance]:
        """The rounds the model submitted to, newest first, with Numerai's live scores so far
        (numerapi's `round_model_performances_v2` query; it needs no keys)."""
        query = """query($modelId: String!, $tournament: Int!) {
            v2RoundModelPerformances(modelId: $modelId, tournament: $tournament) {
                roundNumber roundResolved submissionScores { displayName day value }
            }
        }"""
        variables = {"modelId": model_id, "tournament": self.tournament}
        found = self._api.raw_query(query, variables)["data"]["v2RoundModelPerformances"] or []
        return [
            RoundPerformance(
                round=int(item["roundNumber"]),
                resolved=bool(item.get("roundResolved")),
                day=max((s["day"] for s in item.get("submissionScores") or []), default=None),
                scores={
                    s["displayName"]: float(s["value"])
                    for s in item.get("submissionScores") or []
                    if s.get("value") is not None
                },
            )
            for item in found
        ]

    # Webhooks --------------------------------------------------------------------------------

    def set_webhook(self, model_id: str, url: str | None) -> bool:
        self._require_keys("Setting the submission webhook")
        return self._api.set_submission_webhook(model_id, url)

    def registered_webhooks(self) -> dict[str, str | None]:
        """Model name to the submission webhook Numerai has for it (this tournament)."""
        self._require_keys("Reading the submission webhooks")
        query = "query { account { models { name tournament submissionWebhook } } }"
        models = self._api.raw_query(query, authorization=True)["data"]["account"]["models"]
        return {
            model["name"]: model.get("submissionWebhook")
            for model in models
            if model["tournament"] == self.tournament
        }

    def trigger_webhook(self, model_id: str) -> str:
        """Ask Numerai to call the model's webhook now, as on round day; returns the trigger id."""
        self._require_keys("Triggering the webhook")
        mutation = "mutation($modelId: String!) { triggerModelWebhook(modelId: $modelId) }"
        raw = self._api.raw_query(mutation, {"modelId": model_id}, authorization=True)
        return raw["data"]["triggerModelWebhook"]

    # -----------------------------------------------------------------------------------------

    def _require_keys(self, action: str) -> None:
        if not self.has_keys:
            raise MissingKeys(action)

    def _put(self, url: str, path: Path) -> None:
        """PUT the file and check the answer: numerapi ignores the status of its own PUT."""
        headers = {"Content-Type": "text/csv"}
        compute_id = load_settings().compute_id
        if compute_id:
            headers["x_compute_id"] = compute_id
        try:
            response = download.http().put(
                url, content=path.read_bytes(), headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise NumeraiUnavailable(
                f"Uploading the predictions failed: {type(exc).__name__}."
            ) from None
        if response.status_code >= 300:
            raise UploadRejected(
                f"Numerai's upload storage refused the predictions file (HTTP "
                f"{response.status_code}: {response.text[:200].strip()}). Nothing was submitted.",
                transient=response.status_code >= 500,
            )


def version_key(version: str) -> tuple[str, tuple[int, ...]]:
    """Sort data versions as versions (v5.10 after v5.9), each tournament's apart."""
    prefix, _, number = version.rpartition("/")
    return prefix, tuple(int(part) for part in re.findall(r"\d+", number))


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = isoparse(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _translate(message: str, url: str) -> Exception:
    """Map a Numerai GraphQL error message to this project's exception."""
    lowered = message.lower()
    if "api keys required" in lowered:
        return MissingKeys()
    if any(word in lowered for word in ("api key", "token", "not authenticated", "unauthor")):
        return InvalidKeys(
            f"Numerai refused the API keys ({message}). Check NUMERAI_PUBLIC_ID and "
            "NUMERAI_SECRET_KEY (or the Prefect Secret blocks), and that the key has the "
            "upload scope."
        )
    if "round" in lowered and "closed" in lowered:
        return RoundClosed(
            f"Numerai says the round is closed ({message}). The node runs again when the "
            "next round opens."
        )
    return NumeraiApiError(f"Numerai's API at {url} answered: {message}")
