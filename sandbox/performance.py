"""Round performances: the scores Numerai reports for the rounds a model submitted to.

A round is scored once it closes, one score a day for each metric until day SCORE_DAYS, and it
resolves at its resolve time. The values are placeholders, stable per submission (seeded by its
id): they say that scoring happened, not how good the predictions were.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from graphql import GraphQLResolveInfo

from sandbox.context import request_context, round_id
from sandbox.errors import SandboxError
from sandbox.state import ModelRecord, RoundRecord, SandboxState, SubmissionRecord, iso

SCORE_DAYS = 20
# displayName and payout multiplier (0: reported, not paid on), as in Numerai's payout formula
METRICS = (("v2_corr20", 0.75), ("mmc", 2.25), ("bmc", 0.0))
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DailyScore:
    metric: str
    day: int
    value: float
    percentile: float


@dataclass(frozen=True)
class ScoredRound:
    """One round of one model: the submission Numerai scores (its last) and the scores so far."""

    round: RoundRecord
    submission: SubmissionRecord
    scores: tuple[DailyScore, ...]
    resolved: bool

    def latest(self) -> list[DailyScore]:
        """Each metric's most recent score."""
        last: dict[str, DailyScore] = {}
        for score in self.scores:
            last[score.metric] = score
        return list(last.values())


def _rng(*key: object) -> np.random.Generator:
    digest = uuid.uuid5(uuid.NAMESPACE_OID, "/".join(str(k) for k in key)).int
    return np.random.default_rng(digest)


def _scores(submission: SubmissionRecord, days: int) -> tuple[DailyScore, ...]:
    out = []
    for metric, _ in METRICS:
        base = _rng("score", submission.id, metric)
        skill, rank = base.normal(0.01, 0.02), base.uniform(0.05, 0.95)
        for day in range(1, days + 1):
            noise = _rng("day", submission.id, metric, day)
            value = skill * (0.5 + 0.5 * day / SCORE_DAYS) + noise.normal(0.0, 0.002)
            percentile = float(np.clip(rank + noise.normal(0.0, 0.02), 0.0, 1.0))
            out.append(DailyScore(metric, day, round(float(value), 6), round(percentile, 6)))
    return tuple(out)


def scored_rounds(state: SandboxState, model: ModelRecord) -> list[ScoredRound]:
    """Every round the model submitted to, newest first; an open round has no scores yet."""
    now = state.clock()
    last: dict[int, SubmissionRecord] = {}
    for submission in state.submissions_for(model.id):
        last[submission.round] = submission  # oldest first: the last one wins
    found = []
    for number in sorted(last, reverse=True):
        rnd = state.round(model.tournament, number)
        if rnd is None:
            continue
        days = min(SCORE_DAYS, max(0, (now - rnd.close_time) // _DAY))
        scores = _scores(last[number], days)
        found.append(ScoredRound(rnd, last[number], scores, now >= rnd.resolve_time))
    return found


def _model(state: SandboxState, model: str, tournament: int | None) -> ModelRecord:
    """A model by id, or by name (numerapi's round_model_performances passes a name)."""
    found = state.model(model) or state.model_by_name(model, tournament)
    if found is None:
        raise SandboxError(f"model {model} does not exist")
    return found


def _score_json(scored: ScoredRound, score: DailyScore) -> dict[str, Any]:
    return {
        "date": iso(scored.round.close_time + score.day * _DAY),
        "day": score.day,
        "displayName": score.metric,
        "payoutPending": "0.0",
        "payoutSettled": "0.0" if scored.resolved else None,
        "percentile": score.percentile,
        "value": score.value,
    }


def _multipliers(tournament: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"score-config/{tournament}/{name}")),
            "scoreConfigId": str(uuid.uuid5(uuid.NAMESPACE_OID, f"score-config/{name}")),
            "name": name,
            "version": None,
            "displayName": name,
            "multiplier": multiplier,
        }
        for name, multiplier in METRICS
        if multiplier
    ]


def resolve_round_model_performances(
    _: object, info: GraphQLResolveInfo, modelId: str, tournament: int | None = None
) -> list[dict[str, Any]]:
    """`v2RoundModelPerformances`: a model's rounds, newest first, with their latest scores."""
    state = request_context(info).backend.state
    model = _model(state, modelId, tournament)
    if tournament is not None and tournament != model.tournament:
        return []
    return [
        {
            "atRisk": "0.0",
            "payoutMultipliers": _multipliers(model.tournament),
            "roundPayoutFactor": "1.0",
            "roundNumber": scored.round.number,
            "roundOpenTime": iso(scored.round.open_time),
            "roundResolveTime": iso(scored.round.resolve_time),
            "roundResolved": scored.resolved,
            "roundTarget": None,
            "submissionScores": [_score_json(scored, s) for s in scored.latest()],
            "intraRoundSubmissionScores": [_score_json(scored, s) for s in scored.scores],
        }
        for scored in scored_rounds(state, model)
    ]


def resolve_submission_scores(
    _: object,
    info: GraphQLResolveInfo,
    modelId: str,
    displayName: str | None = None,
    version: str | None = None,
    day: int | None = None,
    resolved: bool | None = None,
    tournament: int | None = None,
    lastNRounds: int | None = None,
    distinctOnRound: bool | None = None,
) -> list[dict[str, Any]]:
    """`submissionScores`: every daily score of a model, newest round first, filtered."""
    state = request_context(info).backend.state
    model = _model(state, modelId, tournament)
    if tournament is not None and tournament != model.tournament:
        return []
    rounds = [r for r in scored_rounds(state, model) if r.scores]
    if resolved is not None:
        rounds = [r for r in rounds if r.resolved == resolved]
    if lastNRounds is not None:
        rounds = rounds[:lastNRounds]
    out = []
    for scored in rounds:
        scores = [
            s
            for s in scored.scores
            if (displayName is None or s.metric == displayName) and (day is None or s.day == day)
        ]
        if version is not None:
            scores = []  # the sandbox's score configs have no version
        if distinctOnRound:
            scores = list({s.metric: s for s in scores}.values())
        rnd = scored.round
        out += [
            {
                "roundId": round_id(rnd),
                "submissionId": scored.submission.id,
                "roundNumber": rnd.number,
                "roundResolveTime": iso(rnd.resolve_time),
                "roundScoreTime": iso(rnd.close_time + _DAY),
                "roundCloseStakingTime": iso(rnd.close_staking_time),
                "value": s.value,
                "percentile": s.percentile,
                "displayName": s.metric,
                "version": None,
                "date": iso(rnd.close_time + s.day * _DAY),
                "day": s.day,
                "resolveDate": iso(rnd.resolve_time),
                "resolved": scored.resolved,
            }
            for s in scores
        ]
    return out
