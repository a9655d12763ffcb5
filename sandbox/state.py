"""In-memory, thread-safe sandbox state: keys, models, rounds, uploads, submissions, webhooks."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta

from flows.tournaments import CLASSIC, Tournament
from flows.tournaments import SIGNALS as SIGNALS  # re-exported: tests/flows import it from here
from sandbox.chaos import Chaos
from sandbox.errors import AuthError, SandboxConfigError, SandboxError

FIRST_ROUND = 1000
ROUND_LENGTH = timedelta(days=1)
RESOLVE_AFTER = timedelta(days=30)
_ID_NAMESPACE = uuid.UUID("6f1f6d35-0c1e-4d0e-9a7a-5b1c2a3d4e5f")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC, whole seconds and a `Z`, as Numerai's API writes datetimes
    (numerai-cli parses them with `%Y-%m-%dT%H:%M:%SZ`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManualClock:
    """A clock that tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def parse_model_spec(spec: str) -> tuple[str, Tournament]:
    """`name` is a Classic model; `name:signals` (or `name:<tournament id>`) names another."""
    name, _, tournament = spec.partition(":")
    if not name:
        raise SandboxConfigError(f"empty model name in {spec!r}")
    if not tournament:
        return name, CLASSIC
    try:
        return name, Tournament.parse(tournament)
    except ValueError as exc:  # Tournament.parse raises a plain ValueError naming the valid ones
        raise SandboxConfigError(f"model {spec!r}: {exc}") from None


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    tournament: int


@dataclass(frozen=True)
class RoundRecord:
    tournament: int
    number: int
    open_time: datetime
    close_staking_time: datetime
    close_time: datetime
    resolve_time: datetime

    def is_open(self, now: datetime) -> bool:
        return self.open_time <= now < self.close_time

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "tournament": self.tournament,
            "number": self.number,
            "openTime": iso(self.open_time),
            "closeStakingTime": iso(self.close_staking_time),
            "closeTime": iso(self.close_time),
            "resolveTime": iso(self.resolve_time),
            "isOpen": self.is_open(now),
        }


@dataclass(frozen=True)
class SubmissionRecord:
    id: str
    model_id: str
    model_name: str
    round: int
    tournament: int
    trigger_id: str | None
    filename: str
    row_count: int
    ids: tuple[str, ...] = field(repr=False)
    inserted_at: datetime
    source: str | None

    def to_json(self, *, with_ids: bool = False) -> dict[str, object]:
        data = asdict(self)
        data["inserted_at"] = iso(self.inserted_at)
        data["ids"] = list(self.ids) if with_ids else None
        if not with_ids:
            del data["ids"]
        return data


@dataclass(frozen=True)
class TriggerRecord:
    id: str
    model_id: str
    tournament: int
    round: int
    webhook: str | None
    created_at: datetime


@dataclass
class UploadRecord:
    key: str
    filename: str
    model_id: str
    tournament: int
    data: bytes | None = None
    compute_id: str | None = None


def _seconds(value: object) -> float:
    """A latency from JSON: a number (or numeric text) of seconds; below 0 means 0."""
    if isinstance(value, int | float | str):
        try:
            return max(0.0, float(value))
        except ValueError:  # float() of text that is not a number
            pass
    raise SandboxError(f"latency_s must be a number of seconds, not {value!r}")


@dataclass
class Faults:
    """Failures the sandbox injects on purpose."""

    reject_uploads: bool = False
    graphql_error: str | None = None
    latency_s: float = 0.0

    def update(self, changes: dict[str, object]) -> None:
        """Apply a partial update from JSON; unknown names or a bad latency are a SandboxError."""
        unknown = set(changes) - {"reject_uploads", "graphql_error", "latency_s"}
        if unknown:
            raise SandboxError(f"unknown faults {sorted(unknown)}")
        latency = _seconds(changes["latency_s"]) if "latency_s" in changes else self.latency_s
        if "reject_uploads" in changes:
            self.reject_uploads = bool(changes["reject_uploads"])
        if "graphql_error" in changes:
            value = changes["graphql_error"]
            self.graphql_error = None if value in (None, "") else str(value)
        self.latency_s = latency

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Store:
    models: dict[str, ModelRecord] = field(default_factory=dict)
    rounds: dict[int, list[RoundRecord]] = field(default_factory=dict)
    uploads: dict[str, UploadRecord] = field(default_factory=dict)
    submissions: list[SubmissionRecord] = field(default_factory=list)
    webhooks: dict[str, str] = field(default_factory=dict)
    triggers: list[TriggerRecord] = field(default_factory=list)


class SandboxState:
    """Everything the sandbox remembers. All methods are safe to call from any thread."""

    def __init__(
        self,
        *,
        public_id: str,
        secret_key: str,
        models: Sequence[str] = ("sandbox_model",),
        clock: Clock = utc_now,
        first_round: int = FIRST_ROUND,
        round_length: timedelta = ROUND_LENGTH,
        username: str = "sandbox_user",
        chaos: Chaos | None = None,
    ) -> None:
        self.public_id = public_id
        self._secret_key = secret_key
        self.username = username
        self.account_id = str(uuid.uuid5(_ID_NAMESPACE, f"account/{public_id}"))
        self.clock = clock
        self.round_length = round_length
        self.faults = Faults()
        self.chaos = chaos or Chaos()  # off unless given; reconfigured in place, never replaced
        self.webhook_sender: Callable[[TriggerRecord], None] | None = None
        self._lock = threading.RLock()
        self._store = _Store()
        for spec in models:
            self.add_model(*parse_model_spec(spec))
        now = clock()
        for tournament in Tournament:
            self._store.rounds[tournament] = [self._new_round(tournament, first_round, now)]

    # --- auth -------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> None:
        """Accept `Token <public_id>$<secret_key>`; otherwise raise an AuthError naming why."""
        hint = "send the header `Authorization: Token <public_id>$<secret_key>`"
        if not authorization:
            raise AuthError(f"Your API key is invalid or missing: no Authorization header; {hint}.")
        scheme, _, token = authorization.partition(" ")
        public_id, sep, secret_key = token.strip().partition("$")
        if scheme != "Token" or not sep:
            raise AuthError(f"Your API key is invalid or missing: malformed header; {hint}.")
        if public_id != self.public_id or not secrets.compare_digest(secret_key, self._secret_key):
            raise AuthError(
                "Your API key is invalid or missing: unknown public id or wrong secret key."
            )

    # --- models -----------------------------------------------------------------------------
    def add_model(self, name: str, tournament: int = CLASSIC) -> ModelRecord:
        """Add a model (idempotent); its id is stable for (public id, tournament, name)."""
        model_id = str(uuid.uuid5(_ID_NAMESPACE, f"model/{self.public_id}/{tournament}/{name}"))
        record = ModelRecord(model_id, name, tournament)
        with self._lock:
            self._store.models.setdefault(model_id, record)
        return record

    def models(self, tournament: int | None = None) -> list[ModelRecord]:
        with self._lock:
            return [
                m
                for m in self._store.models.values()
                if tournament is None or m.tournament == tournament
            ]

    def model(self, model_id: str) -> ModelRecord | None:
        with self._lock:
            return self._store.models.get(model_id)

    def model_by_name(self, name: str, tournament: int | None = None) -> ModelRecord | None:
        matches = [m for m in self.models(tournament) if m.name == name]
        return matches[0] if matches else None

    # --- rounds -----------------------------------------------------------------------------
    def _new_round(
        self, tournament: int, number: int, now: datetime, window: timedelta | None = None
    ) -> RoundRecord:
        close = now + (window or self.round_length)
        return RoundRecord(tournament, number, now, close, close, now + RESOLVE_AFTER)

    def rounds(self, tournament: int) -> list[RoundRecord]:
        """All rounds of a tournament, newest first."""
        with self._lock:
            return list(reversed(self._store.rounds.get(tournament, [])))

    def _rounds_of(self, tournament: int) -> list[RoundRecord]:
        """The live list of a tournament's rounds (call with the lock held)."""
        rounds = self._store.rounds.get(tournament)
        if not rounds:
            raise SandboxError(f"tournament {tournament} does not exist in this sandbox")
        return rounds

    def current_round(self, tournament: int = CLASSIC) -> RoundRecord:
        """The newest round, open or closed."""
        with self._lock:
            return self._rounds_of(tournament)[-1]

    def round(self, tournament: int, number: int) -> RoundRecord | None:
        with self._lock:
            return next(
                (r for r in self._store.rounds.get(tournament, []) if r.number == number), None
            )

    def open_round(self, tournament: int = CLASSIC, window: timedelta | None = None) -> RoundRecord:
        """Close the current round (if still open) and open the next one now, for `window`
        (the sandbox's round length without one)."""
        now = self.clock()
        with self._lock:
            rounds = self._rounds_of(tournament)
            last = rounds[-1]
            if last.close_time > now:
                rounds[-1] = replace(last, close_staking_time=now, close_time=now)
            rounds.append(self._new_round(tournament, last.number + 1, now, window))
            return rounds[-1]

    def close_round(self, tournament: int = CLASSIC) -> RoundRecord:
        """Put the current round's close times in the past; it stays the current round."""
        now = self.clock() - timedelta(seconds=1)
        with self._lock:
            rounds = self._rounds_of(tournament)
            last = rounds[-1]
            rounds[-1] = replace(
                last,
                close_staking_time=min(last.close_staking_time, now),
                close_time=min(last.close_time, now),
                open_time=min(last.open_time, now),
            )
            return rounds[-1]

    # --- uploads ----------------------------------------------------------------------------
    def create_upload(self, filename: str, model_id: str, tournament: int) -> UploadRecord:
        """Reserve an upload key; the file arrives later by PUT."""
        record = UploadRecord(uuid.uuid4().hex, filename, model_id, tournament)
        with self._lock:
            self._store.uploads[record.key] = record
        return record

    def store_upload(self, key: str, data: bytes, compute_id: str | None = None) -> bool:
        """Keep the PUT body of an upload; False if the key was never issued."""
        with self._lock:
            record = self._store.uploads.get(key)
            if record is None:
                return False
            record.data = data
            record.compute_id = compute_id
            return True

    def upload(self, key: str) -> UploadRecord | None:
        with self._lock:
            return self._store.uploads.get(key)

    def uploads(self) -> list[UploadRecord]:
        """Every upload reserved so far, in order."""
        with self._lock:
            return list(self._store.uploads.values())

    # --- submissions ------------------------------------------------------------------------
    def add_submission(self, record: SubmissionRecord) -> SubmissionRecord:
        with self._lock:
            self._store.submissions.append(record)
        return record

    @property
    def submissions(self) -> list[SubmissionRecord]:
        """Every submission so far, oldest first (a copy)."""
        with self._lock:
            return list(self._store.submissions)

    def submissions_for(self, model_id: str | None) -> list[SubmissionRecord]:
        """One model's submissions; None means all."""
        return [s for s in self.submissions if model_id is None or s.model_id == model_id]

    # --- webhooks ---------------------------------------------------------------------------
    def set_webhook(self, model_id: str, url: str | None) -> None:
        """Store a model's submission webhook; None (or "") clears it."""
        with self._lock:
            if url:
                self._store.webhooks[model_id] = url
            else:
                self._store.webhooks.pop(model_id, None)

    def webhook(self, model_id: str) -> str | None:
        with self._lock:
            return self._store.webhooks.get(model_id)

    def fire_webhook(self, model_id: str) -> str:
        """Record a trigger for the model's webhook and return its trigger id.

        Delivery is delegated to `webhook_sender` (the runner sets `WebhookDelivery.send`).
        """
        model = self.model(model_id)
        if model is None:
            raise SandboxError(f"model {model_id} does not exist")
        record = TriggerRecord(
            id=str(uuid.uuid4()),
            model_id=model_id,
            tournament=model.tournament,
            round=self.current_round(model.tournament).number,
            webhook=self.webhook(model_id),
            created_at=self.clock(),
        )
        with self._lock:
            self._store.triggers.append(record)
        if self.webhook_sender is not None:
            self.webhook_sender(record)
        return record.id

    @property
    def triggers(self) -> list[TriggerRecord]:
        """Every webhook trigger so far, oldest first (a copy)."""
        with self._lock:
            return list(self._store.triggers)

    def triggers_for(self, model_id: str | None) -> list[TriggerRecord]:
        """One model's triggers; None means all."""
        return [t for t in self.triggers if model_id is None or t.model_id == model_id]
