"""Tests of medrefine.reports.document: markdown and HTML rendering, wide tables, alert boxes."""

from __future__ import annotations

import re

from medrefine.reports.document import MAX_COLUMNS, Document


def test_wide_table_split_into_key_and_collapsible_tables():
    header = ["#", "structure"] + [f"m{n}" for n in range(16)]
    rows = [["1", "liver"] + [f"{n}.0" for n in range(16)]]
    doc = Document("t")
    doc.table(header, rows, key=[0, 1, 5, 2])
    page = doc.html()
    tables = re.findall(r"<table class=\"responsive\">(.*?)</table>", page)
    heads = [re.findall(r"<th>(.*?)</th>", t) for t in tables]
    # key columns in the given order, then the 14 others in tables of 2 ids + at most 7 columns
    assert heads == [["#", "structure", "m3", "m0"], ["#", "structure", "m1", "m2", "m4", "m5", "m6", "m7", "m8"],
                     ["#", "structure", "m9", "m10", "m11", "m12", "m13", "m14", "m15"]]
    assert all(len(h) <= MAX_COLUMNS for h in heads)
    assert page.index("<details class=\"more\"><summary>14 more columns: m1, m2, m4") < page.index("<th>m1</th>")
    assert "| # | structure | m0 | m1 |" in doc.markdown()  # markdown keeps one full table


def test_narrow_table_unsplit_and_alert_box():
    doc = Document("t")
    doc.table(["case", "n"], [["a", "1"]])
    doc.alert("What got worse: 1", "see below", header=["case", "structure"], rows=[["a", "lv"], ["b", "rv"]], marked=[1],
              anchor="worse")
    page = doc.html()
    assert "<details" not in page and "Plotly" not in page  # no plotly figure: no 4.8 MB of plotly.js
    assert '<section class="alert bad" id="worse"><h3>What got worse: 1</h3><p>see below</p>' in page
    assert "<tr><td>a</td><td>lv</td></tr><tr class=\"vanished\"><td>b</td><td>rv</td></tr>" in page
    assert "> **⚠ What got worse: 1** — see below" in doc.markdown()


def test_plotly_script_embedded_once():
    doc = Document("t")
    doc.plotly('<div id="a"></div>', "[3D](report.html#a)")
    doc.plotly('<div id="b"></div>', "[3D](report.html#b)")
    page = doc.html()
    head = page[: page.index("</head>")]
    assert head.count("<script") == 1 and len(head) > 1_000_000 and "<script src=" not in page
    assert '<div id="a"></div>' in page and "[3D](report.html#b)" in doc.markdown()
