"""Tests of medrefine.reports.write_report: the report folder, its tables, images and atomicity."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from medrefine.errors import InputError
from medrefine.io import save_nifti
from medrefine.reports import write_report


@pytest.fixture
def cohort(tmp_path, blobs, metrics):
    """Three cases on disk (image, reference, prediction, noisy) plus refined/noisy metrics and sources."""
    blob_label, blob_image = blobs
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    sources = {"classes": {"1": "liver", "2": "kidney", "3": "aorta"}, "cases": {}}
    noisy_sources = {"classes": sources["classes"], "cases": {}}
    for n, case in enumerate(["case_a", "case_b", "case_c"]):
        d = tmp_path / "data"
        save_nifti(blob_image(seed=n), d / f"img_{case}.nii.gz", affine=affine)
        save_nifti(blob_label(), d / f"ref_{case}.nii.gz", affine=affine)
        save_nifti(blob_label(shift=n % 2), d / f"pred_{case}.nii.gz", affine=affine)
        save_nifti(blob_label(shift=2), d / f"noisy_{case}.nii.gz", affine=affine)
        sources["cases"][case] = {"pred": f"data/pred_{case}.nii.gz", "ref": f"data/ref_{case}.nii.gz", "image": f"data/img_{case}.nii.gz"}
        noisy_sources["cases"][case] = {"pred": f"data/noisy_{case}.nii.gz", "ref": f"data/ref_{case}.nii.gz", "image": None}
    metrics.to_csv(tmp_path / "refined.csv", index=False)
    (tmp_path / "refined.sources.json").write_text(json.dumps(sources))
    noisy = metrics.assign(value=np.where(metrics["metric"] == "dice", metrics["value"] - 0.1, metrics["value"] + 1))
    noisy.to_csv(tmp_path / "noisy.csv", index=False)
    (tmp_path / "noisy.sources.json").write_text(json.dumps(noisy_sources))
    return tmp_path


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_report_from_dataframe(tmp_path, metrics):
    html = write_report(metrics, tmp_path / "rep", title="Test <run>")
    assert html == tmp_path / "rep" / "report.html"
    md = (tmp_path / "rep" / "report.md").read_text()
    page = html.read_text()
    # the liver row of the per-class table: mean ± std and median of Dice over its 3 cases
    assert "| 1 | liver | 3 | 0.900 ± 0.100 | 0.900 |" in md
    assert "<td>liver</td><td>3</td><td>0.900 ± 0.100</td>" in page
    # kidney mean Dice (0.4 + 0.6 + 0.65) / 3 = 0.550; aorta HD95 mean 10 * (1 - 0.4833) = 5.17 mm
    assert "0.550 ± 0.132" in md and "5.17 ± " in md
    # table sorted by mean Dice
    assert md.index("| liver |") < md.index("| kidney |") < md.index("| aorta |")
    for png in ("ranking.png", "distributions.png", "boxplots.png"):
        assert f"]({png})" in md and (tmp_path / "rep" / png).is_file()
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) == 3
    assert "<title>Test &lt;run&gt;</title>" in page  # escaped
    assert not re.search(r"<(img|script|link)[^>]+(src|href)=\"http", page)  # self-contained
    assert (tmp_path / "rep" / "per_class.csv").is_file()
    assert leftovers(tmp_path) == []


def test_report_with_sources_compare_overlays_and_mesh(cohort):
    out = cohort / "report"
    write_report(cohort / "refined.csv", out, compare={"noisy": cohort / "noisy.csv"}, mesh_case="case_b", name="refined")
    md = (out / "report.md").read_text()
    names = sorted(p.name for p in out.iterdir())
    assert {"overlay_case_a.png", "overlay_case_b.png", "overlay_case_c.png",
            "compare_noisy.png", "compare_noisy.csv"} <= set(names)
    assert not [n for n in names if n.startswith("mesh_")]  # the 3D view lives in report.html
    assert "## Comparison: noisy → refined" in md
    # liver: noisy 0.800 -> refined 0.900, +0.100, improved in 3 of 3 cases
    assert "| 1 | liver | 0.800 | 0.900 | +0.100 |" in md and "| 3/3 |" in md
    assert "## 3D surfaces: case_b" in md and "(report.html#mesh3d)" in md
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) == 3 + 1 + 3  # charts, compare chart, overlays
    assert page.count('id="mesh3d"') == 1 and page.count("Plotly.newPlot(") == 1
    assert "case_c: mean Dice" in md and "(best)" in md and "(worst)" in md


def test_overlay_cases_by_name_and_replacing_a_report(cohort):
    write_report(cohort / "refined.csv", cohort / "r", overlay_cases=["case_b"])
    assert sorted(p.name for p in (cohort / "r").glob("overlay_*")) == ["overlay_case_b.png"]
    write_report(cohort / "refined.csv", cohort / "r", overlay_cases=0)  # replaces the folder, no merge
    assert not list((cohort / "r").glob("overlay_*"))
    assert leftovers(cohort) == []


def test_bad_metrics_leave_no_folder(tmp_path, metrics):
    bad = tmp_path / "bad.csv"
    metrics.drop(columns=["value"]).to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"bad\.csv: missing column\(s\) value"):
        write_report(bad, tmp_path / "rep")
    assert not (tmp_path / "rep").exists() and leftovers(tmp_path) == []


def test_failure_keeps_previous_report(tmp_path, metrics, monkeypatch):
    write_report(metrics, tmp_path / "rep", title="first")
    import medrefine.reports.plots as plots

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "box_plots", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(metrics, tmp_path / "rep", title="second")
    assert "<title>first</title>" in (tmp_path / "rep" / "report.html").read_text()
    assert leftovers(tmp_path) == []


def test_refuses_foreign_folder(tmp_path, metrics):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not a medrefine report"):
        write_report(metrics, tmp_path / "notes")
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "keep me"


def test_argument_errors(cohort, metrics):
    with pytest.raises(InputError, match="need the volumes"):
        write_report(metrics, cohort / "x", mesh_case="case_a")
    with pytest.raises(InputError, match="Did you mean 'case_a'"):
        write_report(cohort / "refined.csv", cohort / "x", mesh_case="case_aa")
    with pytest.raises(InputError, match="equals the report's own name"):
        write_report(metrics, cohort / "x", compare={"prediction": metrics})
    with pytest.raises(InputError, match=r"compare\['noisy'\]: missing column"):
        write_report(metrics, cohort / "x", compare={"noisy": metrics.drop(columns="case")})
    assert not (cohort / "x").exists()


def test_missing_volume_is_noted_not_fatal(cohort):
    (cohort / "data" / "ref_case_a.nii.gz").unlink()
    write_report(cohort / "refined.csv", cohort / "rep", overlay_cases=["case_a", "case_b"])
    md = (cohort / "rep" / "report.md").read_text()
    assert "Overlay of case_a skipped" in md and "ref_case_a.nii.gz" in md
    assert (cohort / "rep" / "overlay_case_b.png").is_file()


def test_absent_structures_are_left_out(tmp_path, metrics):
    extra = pd.DataFrame([(c, 42, "thyroid", m, np.nan) for c in ["case_a", "case_b", "case_c"] for m in ("dice", "hd95")],
                         columns=metrics.columns)
    write_report(pd.concat([metrics, extra]), tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| thyroid |" not in md and "not shown: thyroid" in md


def test_structures_where_the_input_was_kept_come_right_after_the_summary(tmp_path, metrics):
    kept = pd.DataFrame([{"case": "case_b", "class_name": "aorta", "reason": "volume 0.02x input", "action": "kept_input"},
                         {"case": "case_c", "class_name": "kidney", "reason": "1 of 4 components lost", "action": "kept_input"}])
    write_report(metrics, tmp_path / "rep", kept_input=kept)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| case_b | aorta | volume 0.02x input |" in md and "| case_c | kidney | 1 of 4 components lost |" in md
    assert "kept the input label for 2 structure(s)" in md
    assert md.index("## Summary") < md.index("## Structures where the input was kept") < md.index("## Per-structure metrics")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<td>case_b</td><td>aorta</td><td>volume 0.02x input</td>" in page


def test_no_fallback_and_no_guard_are_told_apart(tmp_path, metrics):
    write_report(metrics, tmp_path / "none", kept_input=[])
    assert "kept the refinement for every structure of every case" in (tmp_path / "none" / "report.md").read_text()
    write_report(metrics, tmp_path / "unguarded")
    assert "input was kept" not in (tmp_path / "unguarded" / "report.md").read_text()
    with pytest.raises(InputError, match="`kept_input` rows need case, class_name and reason; a row lacks reason"):
        write_report(metrics, tmp_path / "bad", kept_input=[{"case": "case_a", "class_name": "liver"}])
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- the HTML page, parsed
# a permuted, mirrored, anisotropic voxel-to-world matrix: x = -2 j + 10, y = 1.5 k - 20, z = 3 i + 5
TILTED = np.array([[0.0, -2.0, 0.0, 10.0], [0.0, 0.0, 1.5, -20.0], [3.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
_VOID = {"meta", "img", "br", "hr", "input", "link"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], ""

    def find_all(self, tag: str, cls: str | None = None) -> list["Node"]:
        found = [c for c in self.children if c.tag == tag and (cls is None or cls in c.attrs.get("class", "").split())]
        return found + [n for c in self.children for n in c.find_all(tag, cls)]

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


def parse_html(page: str) -> Node:
    """A small element tree of a well-formed page (stdlib html.parser)."""
    from html.parser import HTMLParser

    root = Node("root", {}, None)

    class Parser(HTMLParser):
        current = root

        def handle_starttag(self, tag, attrs):
            node = Node(tag, dict(attrs), self.current)
            self.current.children.append(node)
            if tag not in _VOID:
                self.current = node

        def handle_endtag(self, tag):
            node = self.current
            while node.tag != tag and node.parent is not None:
                node = node.parent
            assert node.tag == tag, f"unbalanced </{tag}>"
            self.current = node.parent

        def handle_data(self, data):
            self.current.text += data

    Parser().feed(page)
    return root


def plotly_payload(script: str) -> tuple[list, dict]:
    decoder = json.JSONDecoder()
    start = script.index("[", script.index("Plotly.newPlot("))
    traces, end = decoder.raw_decode(script[start:])
    layout, _ = decoder.raw_decode(script[start + end:].lstrip(" ,\n"))
    return traces, layout


def decoded(field) -> np.ndarray:
    import base64

    if isinstance(field, dict):
        return np.frombuffer(base64.b64decode(field["bdata"]), dtype=np.dtype(field["dtype"]))
    return np.asarray(field, dtype=float)


@pytest.fixture
def erased(tmp_path, blobs, metrics):
    """case_b's refinement erased the aorta (Dice 0.85 -> 0, status absent_pred), yet the mean Dice rises."""
    blob_label, _ = blobs
    sources = {"classes": {"1": "liver", "2": "kidney", "3": "aorta"}, "cases": {}}
    input_sources = {"classes": sources["classes"], "cases": {}}
    for case in ("case_a", "case_b", "case_c"):
        pred = blob_label()
        if case == "case_b":
            pred[pred == 3] = 0
        save_nifti(blob_label(), tmp_path / f"ref_{case}.nii.gz", affine=TILTED)
        save_nifti(pred, tmp_path / f"pred_{case}.nii.gz", affine=TILTED)
        save_nifti(blob_label(shift=1), tmp_path / f"input_{case}.nii.gz", affine=TILTED)
        sources["cases"][case] = {"pred": f"pred_{case}.nii.gz", "ref": f"ref_{case}.nii.gz", "image": None}
        input_sources["cases"][case] = {"pred": f"input_{case}.nii.gz", "ref": f"ref_{case}.nii.gz", "image": None}
    after = metrics.assign(status="present")
    before = after.assign(value=np.where(after["metric"] == "dice", after["value"] - 0.2, after["value"]))
    gone = (after["case"] == "case_b") & (after["class_name"] == "aorta")
    after.loc[gone & (after["metric"] == "dice"), "value"] = 0.0
    after.loc[gone, "status"] = "absent_pred"
    before.loc[gone & (before["metric"] == "dice"), "value"] = 0.85
    run = tmp_path / "run_2024_near"
    run.mkdir()
    after.to_csv(run / "metrics_refined.csv", index=False)
    before.to_csv(run / "metrics_input.csv", index=False)
    for name, src in (("metrics_refined", sources), ("metrics_input", input_sources)):
        for entry in src["cases"].values():
            entry.update({k: f"../{v}" for k, v in entry.items() if v})
        (run / f"{name}.sources.json").write_text(json.dumps(src))
    assert after[after["metric"] == "dice"]["value"].mean() > before[before["metric"] == "dice"]["value"].mean()
    return run


def test_report_html_parsed(erased):
    html_path = write_report(erased / "metrics_refined.csv", erased / "report", compare={"input": erased / "metrics_input.csv"})
    page = html_path.read_text()
    tree = parse_html(page)
    main, = tree.find_all("main")

    # run named from its folder and the CSV stem, never "metrics"
    assert main.find_all("h1")[0].all_text() == "run_2024_near — medrefine report"
    assert "(metrics)" not in page and "Mean Dice refined vs input: +" in page

    # the first element after the Summary heading is the red what-got-worse box naming the erased aorta
    blocks = [c for c in main.children if c.tag not in ("nav",)]
    summary = next(n for n, c in enumerate(blocks) if c.tag == "h2" and c.all_text() == "Summary")
    box = blocks[summary + 1]
    assert box.tag == "section" and box.attrs["class"].split() == ["alert", "bad"] and box.attrs["id"] == "what-got-worse"
    rows = [[td.all_text() for td in tr.find_all("td")] for tr in box.find_all("tr", "vanished")]
    assert rows == [["case_b", "3 aorta", "VANISHED: in the reference, absent from refined", "0.850 (input) → 0.000"]]
    assert "but 1 structure(s) vanished" in blocks[summary + 2].all_text()  # the mean's bullet points at the box

    # the 3D view: the worst case by Dice change, scanner coordinates, orientation labels, three layers
    assert [h.all_text() for h in main.find_all("h2") if h.all_text().startswith("3D")] == ["3D surfaces: case_b"]
    assert "chosen because aorta vanished here" in page
    plot, = main.find_all("div", "plot3d")
    assert plot.find_all("div", "plotly-graph-div")[0].attrs["id"] == "mesh3d"
    traces, layout = plotly_payload(plot.find_all("script")[0].text)
    assert [(t["legendgroup"], t["name"]) for t in traces] == [
        ("reference", "1 liver"), ("reference", "2 kidney"), ("reference", "3 aorta"),
        ("input", "1 liver"), ("input", "2 kidney"), ("input", "3 aorta"), ("refined", "1 liver"), ("refined", "2 kidney")]
    assert [t["opacity"] for t in traces] == [0.3] * 3 + [0.5] * 3 + [1.0] * 2
    assert [t["visible"] for t in traces] == [True] * 3 + ["legendonly"] * 3 + [True] * 2
    assert [layout["scene"][f"{a}axis"]["title"]["text"] for a in "xyz"] == ["x (mm)  L → R", "y (mm)  P → A", "z (mm)  I → S"]
    # reference aorta: voxels i 8..11, j 16..20, k 1..10; iso-surface half a voxel out, mapped by TILTED
    x, y, z = (decoded(traces[2][a]) for a in "xyz")
    np.testing.assert_allclose([x.min(), x.max()], [10 - 2 * 20.5, 10 - 2 * 15.5], atol=1e-4)
    np.testing.assert_allclose([y.min(), y.max()], [1.5 * 0.5 - 20, 1.5 * 10.5 - 20], atol=1e-4)
    np.testing.assert_allclose([z.min(), z.max()], [3 * 7.5 + 5, 3 * 11.5 + 5], atol=1e-4)
    assert page.count("Plotly.newPlot(") == 1 and page.count("<script type=\"text/javascript\">") == 1
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inline, once: no CDN, opens offline

    # no sideways scrolling: every table responsive and at most 9 columns; the wide tables are split
    css = tree.find_all("style")[0].text
    assert re.search(r"table\.responsive\{[^}]*width:100%;max-width:100%", css)
    assert re.search(r"main\{max-width:1200px", css)
    tables = main.find_all("table")
    assert tables and all(t.attrs.get("class") == "responsive" for t in tables)
    widths = [len(t.find_all("th")) for t in tables]
    assert max(widths) <= 9
    per_structure = [t for t in tables if [th.all_text() for th in t.find_all("th")][:3] == ["#", "structure", "n"]][0]
    assert [th.all_text() for th in per_structure.find_all("th")] == [
        "#", "structure", "n", "dice mean ± std", "dice median", "hd95 (mm) mean ± std", "Dice ≥ 0.5", "Dice ≥ 0.7", "Dice ≥ 0.9"]
    more = main.find_all("details", "more")
    assert more and "hd95 median" in more[0].find_all("summary")[0].all_text()
    assert (erased / "report" / "worse.csv").is_file()


def test_nothing_got_worse_is_said(cohort):
    write_report(cohort / "refined.csv", cohort / "rep", compare={"noisy": cohort / "noisy.csv"}, overlay_cases=0)
    tree = parse_html((cohort / "rep" / "report.html").read_text())
    box, = tree.find_all("section", "alert")
    assert box.attrs["class"] == "alert good"
    assert box.all_text().startswith("Nothing got worse") and "against noisy" in box.all_text()
    assert not (cohort / "rep" / "worse.csv").exists()
