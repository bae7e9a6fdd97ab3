"""The SVG charts of the driftline pages, read back as XML: every point where its value puts
it, the champion and crossings marked, the threshold between the values above and below it,
a missing value breaking the line, and no markup injected through a label."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from driftline_provider.ui.charts import Bar, Point, bar_chart, line_chart

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_points_sit_by_value_and_the_threshold_separates_those_above_from_below():
    values = [0.10, 0.55, 0.30, 0.42]
    svg = parse(line_chart([Point(f"i{k}", v, marked=v > 0.4) for k, v in enumerate(values)],
                           title="drift", y_label="share", threshold=0.4))
    circles = svg.findall(".//svg:circle", NS)
    assert len(circles) == 4
    ys = [float(c.get("cy")) for c in circles]
    assert sorted(range(4), key=lambda k: ys[k]) == sorted(range(4), key=lambda k: -values[k])
    xs = [float(c.get("cx")) for c in circles]
    assert xs == sorted(xs) and len(set(xs)) == 4
    (threshold,) = svg.findall(".//svg:line[@class='threshold']", NS)
    ty = float(threshold.get("y1"))
    assert all((y < ty) == (v > 0.4) for y, v in zip(ys, values, strict=True))
    marked = [c for c in circles if c.get("class") == "point marked"]
    assert [float(c.get("cy")) for c in marked] == [ys[1], ys[3]]
    assert {c.get("r") for c in marked} == {"6"}


def test_a_missing_value_breaks_the_line_and_is_not_drawn():
    svg = parse(line_chart([Point("a", 1.0), Point("b", 2.0), Point("c", None),
                            Point("d", 3.0), Point("e", 2.5)], title="t", y_label="y"))
    assert len(svg.findall(".//svg:polyline", NS)) == 2
    assert len(svg.findall(".//svg:circle", NS)) == 4
    assert line_chart([Point("a", None)], title="t", y_label="y") == ""


def test_tooltips_links_and_labels_are_escaped_text():
    hostile = '<script>alert(1)</script>"'
    svg = parse(line_chart([Point(hostile, 0.5, tooltip=hostile, href='#m-"x')],
                           title=hostile, y_label="y"))
    assert svg.find(".//svg:script", NS) is None
    assert svg.find("svg:title", NS).text == hostile
    (link,) = svg.findall(".//svg:a", NS)
    assert link.get("href") == '#m-"x'
    assert link.find("svg:circle/svg:title", NS).text == hostile
    assert hostile in [t.text for t in svg.findall(".//svg:text", NS)]


def test_bars_are_proportional_and_drifted_columns_flagged():
    svg = parse(bar_chart([Bar("temp", 0.6, flagged=True), Bar("dep_delay", 0.15)],
                          title="columns", threshold=0.3))
    rects = svg.findall(".//svg:rect", NS)
    assert [r.get("class") for r in rects] == ["bar flagged", "bar"]
    widths = [float(r.get("width")) for r in rects]
    assert widths[0] / widths[1] == 4.0
    (threshold,) = svg.findall(".//svg:line[@class='threshold']", NS)
    x0 = float(rects[0].get("x"))
    assert float(threshold.get("x1")) - x0 == widths[0] / 2  # 0.3 is half of 0.6
    assert bar_chart([], title="none") == ""
