"""SandboxState on its own: keys, model specs, rounds under a manual clock, webhooks, faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flows.tournaments import CLASSIC, CRYPTO, SIGNALS
from sandbox.errors import AuthError, SandboxConfigError, SandboxError
from sandbox.state import (
    Faults,
    ManualClock,
    ModelRecord,
    SandboxState,
    TriggerRecord,
    iso,
    parse_model_spec,
)


def _model(state: SandboxState, name: str) -> ModelRecord:
    model = state.model_by_name(name)
    assert model is not None, f"no model {name}"
    return model


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(clock: ManualClock) -> SandboxState:
    return SandboxState(
        public_id="pub", secret_key="s3cr3t", models=("m", "s:signals"), clock=clock
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Authorization header"),
        ("Bearer pub$s3cr3t", "malformed"),
        ("Token pubs3cr3t", "malformed"),
        ("Token pub$nope", "wrong secret key"),
        ("Token other$s3cr3t", "unknown public id"),
    ],
)
def test_authenticate_names_the_cause(state: SandboxState, header, reason):
    with pytest.raises(AuthError, match=reason) as caught:
        state.authenticate(header)
    assert "s3cr3t" not in str(caught.value)


def test_authenticate_accepts_the_keys(state: SandboxState):
    state.authenticate("Token pub$s3cr3t")


def test_model_specs_and_stable_ids(state: SandboxState):
    assert parse_model_spec("m") == ("m", CLASSIC)
    assert parse_model_spec("s:signals") == ("s", SIGNALS)
    assert parse_model_spec(f"c:{CRYPTO.value}") == ("c", CRYPTO)
    with pytest.raises(SandboxConfigError, match="model 'x:chess': Unknown tournament 'chess'"):
        parse_model_spec("x:chess")
    with pytest.raises(SandboxConfigError, match="empty model name"):
        parse_model_spec(":signals")
    again = SandboxState(public_id="pub", secret_key="other", models=("m",))
    assert _model(again, "m").id == _model(state, "m").id
    assert [m.name for m in state.models(SIGNALS)] == ["s"]


def test_rounds_open_close_and_time(state: SandboxState, clock: ManualClock):
    first = state.current_round()
    assert first.number == 1000 and first.is_open(clock())
    assert first.close_time - first.open_time == timedelta(days=1)
    clock.advance(timedelta(hours=1))
    second = state.open_round()
    assert second.number == 1001 and second.open_time == clock()
    first_again = state.round(CLASSIC, 1000)
    assert first_again is not None and not first_again.is_open(clock())
    assert [r.number for r in state.rounds(CLASSIC)] == [1001, 1000]
    assert state.current_round(SIGNALS).number == 1000
    closed = state.close_round()
    assert closed.number == 1001 and not closed.is_open(clock())
    for unknown in (state.current_round, state.open_round, state.close_round):
        with pytest.raises(SandboxError, match="tournament 99 does not exist"):
            unknown(99)


def test_webhooks_and_triggers(state: SandboxState):
    model = _model(state, "m")
    state.set_webhook(model.id, "http://hook")
    sent: list[TriggerRecord] = []
    state.webhook_sender = sent.append
    trigger_id = state.fire_webhook(model.id)
    assert [t.id for t in sent] == [trigger_id] and sent[0].webhook == "http://hook"
    state.set_webhook(model.id, None)
    assert state.webhook(model.id) is None
    with pytest.raises(SandboxError):
        state.fire_webhook("nope")


def test_faults_update():
    faults = Faults()
    faults.update({"reject_uploads": True, "graphql_error": "", "latency_s": -1})
    assert faults.to_json() == {"reject_uploads": True, "graphql_error": None, "latency_s": 0.0}
    faults.update({"latency_s": "0.25"})
    assert faults.latency_s == 0.25
    with pytest.raises(SandboxError, match="unknown faults"):
        faults.update({"explode": True})
    with pytest.raises(SandboxError, match="latency_s must be a number"):
        faults.update({"reject_uploads": False, "latency_s": "soon"})
    assert faults.reject_uploads is True  # a refused update changes nothing


def test_times_are_written_as_numerai_writes_them():
    """Whole seconds in UTC with a `Z`: numerai-cli parses them with `%Y-%m-%dT%H:%M:%SZ`."""
    moment = datetime(2026, 3, 7, 18, 0, 5, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert iso(moment) == "2026-03-07T16:00:05Z"
    assert datetime.strptime(iso(moment), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) == (
        moment.replace(microsecond=0)
    )
