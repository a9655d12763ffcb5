"""The history chart is plain SVG: valid XML, one bar per era, one point per scored round."""

from __future__ import annotations

import base64
from xml.etree import ElementTree

from flows.chart import history_svg, markdown_image

SVG = "{http://www.w3.org/2000/svg}"


def _chart() -> ElementTree.Element:
    per_era = {f"{era:04d}": (-1) ** era * era / 1000 for era in range(1, 201)}
    live = [(1000 + n, {"v2_corr20": 0.01 * n, "mmc": -0.002 * n}) for n in range(5)]
    return ElementTree.fromstring(history_svg(per_era, live))


def test_the_chart_is_valid_svg_with_a_bar_per_era_and_a_point_per_round():
    chart = _chart()
    assert chart.tag == f"{SVG}svg"
    assert len(chart.findall(f".//{SVG}rect[@class='era']")) == 200
    for series in ("v2_corr20", "mmc"):
        points = chart.findall(f".//{SVG}circle[@class='{series}']")
        assert len(points) == 5
        titles = [point.find(f"{SVG}title").text for point in points]
        assert [title.split()[1] for title in titles] == [str(1000 + n) for n in range(5)]
    assert len(chart.findall(f".//{SVG}polyline")) == 2


def test_a_round_without_scores_has_no_point_and_an_empty_chart_still_draws():
    live = [(1000, {"v2_corr20": 0.02}), (1001, {})]
    chart = ElementTree.fromstring(history_svg({}, live))
    assert len(chart.findall(f".//{SVG}circle")) == 1
    assert chart.findall(f".//{SVG}rect[@class='era']") == []


def test_the_markdown_image_carries_the_svg_as_a_data_uri():
    svg = history_svg({"0001": 0.01}, [(1000, {"mmc": 0.01})])
    image = markdown_image(svg, "chart")
    prefix = "![chart](data:image/svg+xml;base64,"
    assert image.startswith(prefix) and image.endswith(")")
    assert base64.b64decode(image[len(prefix) : -1]).decode() == svg
