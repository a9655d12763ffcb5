"""Does the round history's chart render in the Prefect UI? A Prefect server with its UI on a free
loopback port, a node's history artifact published to it, and headless Chromium's screenshot
and DOM of the artifact's page. Prints the PNGs and whether the chart's element is in the DOM.

Two artifacts are published: the one the nodes publish (a markdown image with an SVG data URI)
and, for comparison, the same SVG inline as raw HTML (which the UI's sanitizer handles).

Needs Chromium (Debian: `apt-get install chromium`). Run from the project directory:

    uv run --no-sync python -m benchmarks.history_screenshot [OUT_DIR]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import numpy as np
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.chart import history_svg
from flows.history import NodeHistory, RoundRow, history_markdown, publish_history
from tests.integration.servers import PrefectServer

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=20000",  # the UI is a single-page app: let it fetch and draw
)


def _history(node: str, rounds: int = 12, eras: int = 200) -> NodeHistory:
    """A node's last `rounds` rounds, seeded: the newest open, four closed but unresolved."""
    rng = np.random.default_rng(7)
    per_era = {f"{era:04d}": float(rng.normal(0.02, 0.03)) for era in range(1, eras + 1)}
    mean = sum(per_era.values()) / len(per_era)
    start = datetime(2026, 1, 6, 13, 5, tzinfo=UTC)
    rows = []
    for i in range(rounds):
        number = 1000 + i
        age = rounds - 1 - i
        scored = age > 0
        rows.append(
            RoundRow(
                node=node,
                round=number,
                trigger_id=f"{rng.integers(16**8):08x}-0000-4000-8000-000000000000",
                run_name=f"{node}-r{number}",
                state="Completed" if i != 4 else "Failed",
                duration_seconds=float(rng.uniform(60, 400)),
                runs=1,
                submitted_at=start + timedelta(days=i, minutes=float(rng.uniform(0, 30)))
                if i != 4
                else None,
                submission_id=None,
                validation_corr=mean,
                corr20=float(rng.normal(0.015, 0.02)) if scored and i != 4 else None,
                mmc=float(rng.normal(0.002, 0.01)) if scored and i != 4 else None,
                score_day=min(20, age * 3) if scored and i != 4 else None,
                resolved=age > 4 and i != 4,
                per_era=per_era,
            )
        )
    return NodeHistory(node=node, model="my_model", tournament=None, rows=rows[::-1])


def _chromium() -> str:
    for name in _BROWSERS:
        if found := shutil.which(name):
            return found
    raise SystemExit("No Chromium found: install it (Debian: apt-get install -y chromium).")


def _browse(browser: str, url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _shoot(browser: str, url: str, png: Path, scratch: Path) -> dict[str, object]:
    """Screenshot `url` into `png`; and, from its DOM, whether the chart is there."""
    shot = _browse(
        browser, url, scratch / "profile-shot", f"--screenshot={png}", "--window-size=1280,1600"
    )
    dom = _browse(browser, url, scratch / "profile-dom", "--dump-dom").stdout
    images = re.findall(r"<img[^>]*src=\"data:image/svg\+xml[^\"]{0,40}", dom)
    return {
        "png": png if png.exists() else f"none (chromium exit {shot.returncode}: {shot.stderr})",
        "img with an SVG data URI": len(images),
        "inline <svg> with the chart's bars": len(re.findall(r"<rect[^>]*class=\"era\"", dom)),
        "history heading rendered": "round history" in dom,
    }


@flow(name="history-screenshot")
def _publish() -> tuple[UUID, UUID]:
    """The node's history artifact, and the same with its chart inline as raw `<svg>`."""
    history = _history("tournament")
    published = publish_history(history)
    markdown = history_markdown(history)
    image = next(line for line in markdown.splitlines() if line.startswith("!["))
    live = [(row.round, {"v2_corr20": row.corr20 or 0.0}) for row in history.rows[::-1]]
    svg = history_svg(history.rows[0].per_era or {}, live)
    inline = create_markdown_artifact(markdown.replace(image, svg), key="inline-svg-history")
    assert isinstance(inline, UUID), "a sync flow gets the artifact id, never a coroutine"
    return published, inline


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    browser = _chromium()
    with tempfile.TemporaryDirectory(prefix="history-screenshot-") as tmp:
        scratch = Path(tmp)
        ui = {"PREFECT_SERVER_UI_ENABLED": "true", "PREFECT_UI_ENABLED": "true"}
        with PrefectServer(scratch / "prefect", env=ui) as server:
            base = server.api_url.removesuffix("/api")
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                published, inline = _publish()
            for name, file, artifact in (
                ("markdown image (what the nodes publish)", "history-image.png", published),
                ("inline <svg> (comparison)", "history-inline-svg.png", inline),
            ):
                url = f"{base}/artifacts/artifact/{artifact}"
                print(f"{name}: {url}")
                for label, value in _shoot(browser, url, out / file, scratch).items():
                    print(f"  {label}: {value}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="history-")))
