"""The sandbox's Numerai Crypto: its files as numerapi's CryptoAPI downloads them, uploads judged
by numerai-tools' crypto rules, and a Yahoo fake whose coins trade every day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import numerapi
import pandas as pd
import pytest
from numerai_tools.submissions import validate_submission_crypto

from flows.tournaments import CRYPTO
from sandbox.crypto_data import CRYPTO_VERSION, TARGET_DAYS, SyntheticCrypto
from sandbox.errors import SubmissionRejected
from sandbox.runner import Sandbox
from sandbox.submissions import check_crypto
from sandbox.yahoo import FIRST_DAY, daily_prices

ROUND = 1000
MODEL = "sandbox_crypto"


@pytest.fixture(scope="module")
def catalog(data_root: Path) -> SyntheticCrypto:
    crypto = SyntheticCrypto(data_root / "data", size="tiny", seed=0)
    crypto.prepare(ROUND)
    return crypto


@pytest.fixture
def crypto_sandbox(data_root: Path):
    with Sandbox(data_root, models=(f"{MODEL}:crypto", "sandbox_model")) as running:
        yield running


@pytest.fixture
def capi(crypto_sandbox: Sandbox, point_numerapi) -> numerapi.CryptoAPI:
    """The real numerapi CryptoAPI with the sandbox's keys."""
    point_numerapi(crypto_sandbox)
    return numerapi.CryptoAPI(
        crypto_sandbox.public_id,
        crypto_sandbox.secret_key,
        verbosity="warning",
        show_progress_bars=False,
    )


def test_targets_are_daily_binned_ranks_of_the_fakes_forward_returns(catalog: SyntheticCrypto):
    train = pd.read_parquet(catalog.path(f"{CRYPTO_VERSION}/train_targets.parquet", ROUND))
    assert list(train.columns) == ["symbol", "date", "target"]
    days = pd.DatetimeIndex(sorted(train["date"].unique()))
    assert (days[1:] - days[:-1] == pd.Timedelta(days=1)).all()  # every day, weekends too
    last = train[train["date"] == days[-1]].set_index("symbol")["target"]
    shares = last.value_counts(normalize=True).sort_index()
    assert shares.to_numpy() == pytest.approx([0.05, 0.2, 0.5, 0.2, 0.05], abs=0.02)
    calendar = pd.date_range(FIRST_DAY, days[-1] + pd.Timedelta(days=TARGET_DAYS), freq="D")
    forward = {
        symbol: (lambda close: close.iloc[-1] / close.loc[days[-1]])(
            daily_prices(f"{symbol}-USD", 0, calendar)["close"]
        )
        for symbol in last.index
    }
    by_bin = pd.Series(forward).rank().groupby(last).agg(["min", "max"])
    assert (by_bin["min"].iloc[1:].to_numpy() > by_bin["max"].iloc[:-1].to_numpy()).all()


def test_each_round_has_its_universe_with_a_few_coins_yahoo_does_not_know(
    catalog: SyntheticCrypto,
):
    this, next_ = catalog.live_ids(ROUND), catalog.live_ids(ROUND + 1)
    assert this != next_ and len(set(this) & set(next_)) > 0.85 * len(this)
    assert {"BTC", "ETH"} & set(this) and set(catalog.unknown_symbols) <= set(this)
    assert len(this) > 100 and len(set(this)) == len(this)


def test_numerapi_crypto_lists_downloads_and_submits_by_numerai_tools_rules(
    crypto_sandbox: Sandbox, capi: numerapi.CryptoAPI, tmp_path: Path
):
    assert capi.list_datasets() == [
        "crypto/v1.0/live_universe.parquet",
        "crypto/v1.0/train_targets.parquet",
    ]
    live = capi.download_dataset(
        "crypto/v1.0/live_universe.parquet", str(tmp_path / "live.parquet")
    )
    universe = pd.read_parquet(live)
    assert list(universe.columns) == ["symbol"]
    assert universe["symbol"].tolist() == crypto_sandbox.live_ids(CRYPTO)
    models = capi.get_models()
    assert list(models) == [MODEL]  # the Classic model is not Crypto's
    assert capi.get_current_round() == crypto_sandbox.current_round(CRYPTO)

    symbols = universe["symbol"].tolist()
    frame = pd.DataFrame({"symbol": symbols, "signal": range(1, len(symbols) + 1)})
    frame["signal"] /= len(symbols) + 1
    submission_id = capi.upload_predictions(df=frame, model_id=models[MODEL])

    (record,) = crypto_sandbox.submissions(MODEL)
    assert (record.id, record.tournament, record.round) == (submission_id, CRYPTO, ROUND)
    with pytest.raises(ValueError, match="Crypto predictions need two columns"):
        capi.upload_predictions(
            df=frame.rename(columns={"symbol": "ticker"}), model_id=models[MODEL]
        )


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


UNIVERSE = [f"C{i:03d}" for i in range(150)]
GOOD = pd.DataFrame({"symbol": UNIVERSE, "signal": [(i + 1) / 151 for i in range(150)]})


@pytest.mark.parametrize(
    ("frame", "accepted"),
    [
        (GOOD, True),
        (GOOD.rename(columns={"signal": "prediction"}), True),
        (pd.concat([GOOD, pd.DataFrame({"symbol": ["NOTLIVE"], "signal": [0.5]})]), True),
        (GOOD.iloc[:99], False),  # fewer than 100 live symbols
        (GOOD.rename(columns={"symbol": "numerai_ticker"}), False),
        (GOOD[["signal", "symbol"]], False),
        (pd.concat([GOOD, GOOD.iloc[:1]]), False),  # a live symbol twice
        (GOOD.assign(signal=1.5), False),
        (GOOD.assign(signal=0.5), False),  # constant
    ],
)
def test_the_sandbox_accepts_what_numerai_tools_accepts(frame: pd.DataFrame, accepted: bool):
    universe = pd.DataFrame({"symbol": UNIVERSE})
    try:
        validate_submission_crypto(universe, frame.copy())
        tools = True
    except AssertionError:
        tools = False
    try:
        check_crypto(_csv(frame), UNIVERSE)
        ours = True
    except SubmissionRejected:
        ours = False
    assert tools == ours == accepted


def test_the_yahoo_fake_prices_coins_every_day_at_midnight_utc(crypto_sandbox: Sandbox):
    symbol = crypto_sandbox.crypto.yahoo_symbols[0]
    chart = httpx.get(
        f"{crypto_sandbox.yahoo_url}/v8/finance/chart/{symbol}", params={"range": "1mo"}
    )
    result = chart.json()["chart"]["result"][0]
    assert result["meta"]["exchangeTimezoneName"] == "UTC"
    assert result["meta"]["instrumentType"] == "CRYPTOCURRENCY"
    stamps = pd.to_datetime(result["timestamp"], unit="s", utc=True)
    assert (stamps == stamps.normalize()).all()
    assert set(stamps.day_of_week) == set(range(7))
    assert len(stamps) >= 28 and stamps.max().date() >= dt.date.today() - dt.timedelta(days=1)
