"""Test-wide isolation: a private Prefect home, result store and data cache; no ambient keys."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before Prefect or the project is imported: settings are read at import and first use.
_HOME = Path(tempfile.mkdtemp(prefix="numerai-nodes-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_HOME / "results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ["NUMERAI_NODES_HOME"] = str(_HOME / "nodes")
os.environ["NUMERAI_NODES_RETRY_DELAY_SCALE"] = "0"
# Retries end at the round's close, which a sandbox round sets hours away: cap them in tests.
os.environ["NUMERAI_NODES_MAX_RETRIES"] = "3"
# Kept aside for the `live` tests alone (tests/thirdparty/test_live_numerai.py), which read a
# real account when both are set; no other test sees them.
LIVE_NUMERAI_KEYS = {
    name: os.environ.get(name) for name in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY")
}
for _name in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY", "NUMERAI_API_URL", "PREFECT_API_URL"):
    os.environ.pop(_name, None)
# pytest-xdist's workers start with COLUMNS=80, and Rich fixes a console's width at creation
# from COLUMNS: the CLI's consoles would stay 80 wide for the tests that ask for a wide one.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

import pytest  # noqa: E402  (after the environment above is set)
from prefect.settings import PREFECT_API_URL  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first: those building or running containers, then the other
    integration modules (tens of seconds to minutes each), then the rest.

    pytest-xdist hands each worker whole files in this order (`--no-loadscope-reorder`; its
    default order is by number of tests, which puts these few-test modules last). Short modules
    then fill the end of the run, and two workers finish together instead of one running a long
    module alone.
    """

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("container"):
            return 0
        return 1 if item.get_closest_marker("integration") else 2

    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect API for the session (prefect_test_harness: a real server on SQLite)."""
    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(autouse=True, scope="module")
def _events_stay_with_their_server():
    """Prefect keeps one events worker per process, bound to the API URL of the moment it started.
    A module that emits events against a server of its own must not leave it bound there: later
    modules' task-run states would go to a stopped server (seen: flow tests lost every state)."""
    yield
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=5)
