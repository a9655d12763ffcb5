"""Report builders: per-era numerai_corr, the chart and the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.node import SubmissionOutcome
from flows.report import coverage_rows, era_chart, score_eras, submission_rows, summary
from flows.validation import PredictionSummary
from models.signals import Coverage


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    eras = np.repeat([f"{i:04d}" for i in range(1, 6)], 200)
    target = rng.choice([0, 0.25, 0.5, 0.75, 1.0], size=len(eras), p=[0.05, 0.2, 0.5, 0.2, 0.05])
    prediction = target + rng.normal(0, 0.3, len(eras))
    return pd.DataFrame({"era": eras, "target": target, "prediction": prediction})


def test_per_era_scores_are_positive_for_a_predictive_signal_and_summarised():
    scores = score_eras(_frame(), "target")
    values = np.array(list(scores.per_era.values()))
    assert list(scores.per_era) == ["0001", "0002", "0003", "0004", "0005"]
    assert (values > 0.3).all()
    assert scores.mean == pytest.approx(values.mean())
    assert scores.std == pytest.approx(values.std())
    assert scores.sharpe == pytest.approx(values.mean() / values.std())


def test_eras_without_targets_are_skipped():
    frame = _frame()
    frame.loc[frame["era"] == "0005", "target"] = np.nan
    assert "0005" not in score_eras(frame, "target").per_era


def test_chart_has_one_bar_per_era_and_marks_negative_eras():
    frame = _frame()
    bad = frame["era"] == "0002"
    frame.loc[bad, "prediction"] = -frame.loc[bad, "target"]
    chart = era_chart(score_eras(frame, "target"))
    rows = [line for line in chart.splitlines() if line.startswith("| 000")]
    assert len(rows) == 5
    assert "🟥" in rows[1] and all("🟩" in row for i, row in enumerate(rows) if i != 1)


def test_summary_and_table_describe_the_submission():
    outcome = SubmissionOutcome(
        status="submitted",
        submission_id="sub-1",
        predictions_path=Path("p/tournament.csv"),
        model_name="my_model",
        round_number=42,
        trigger_id="trig-9",
    )
    checked = PredictionSummary(rows=10, live_rows=10, minimum=0.1, maximum=1, mean=0.5, std=0.3)
    text = summary("tournament", outcome, checked, score_eras(_frame(), "target"), trained=False)
    assert "round 42" in text and "`trig-9`" in text and "loaded from the model cache" in text
    assert "sharpe" in text
    (row,) = submission_rows(outcome, checked)
    assert row["submission_id"] == "sub-1" and row["trigger_id"] == "trig-9" and row["rows"] == 10


def test_coverage_rows_follow_the_universe_stage_by_stage():
    coverage = Coverage(
        universe=10,
        mapped=8,
        priced=5,
        predicted=5,
        unmapped=("X ZZ", "Y QQ"),
        unpriced=("GONE US", "OLD US", "OLDER US"),
    )
    rows = {row["stage"]: row for row in coverage_rows(coverage, not_found=["GONE US"])}
    assert [(r["tickers"], r["dropped"]) for r in rows.values()] == [
        (10, 0), (8, 2), (7, 1), (5, 2), (5, 0)
    ]  # fmt: skip
    assert rows["mapped to a Yahoo symbol"]["examples"] == "X ZZ, Y QQ"
    assert rows["prices from Yahoo"]["examples"] == "GONE US"
    assert rows["a recent price on the live date"]["examples"] == "OLD US, OLDER US"
