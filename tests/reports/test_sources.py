"""Tests of medrefine.reports.sources: the per-case file table written by ``medrefine evaluate``."""

from __future__ import annotations

import json

import pytest

from medrefine.errors import InputError
from medrefine.reports.sources import load_sources, sources_path_for


def test_relative_paths_and_classes(tmp_path):
    path = tmp_path / "m.sources.json"
    path.write_text(json.dumps({"classes": {"1": "liver"}, "cases": {"c1": {"pred": "p/c1.nii.gz", "ref": "/abs/r.nii.gz", "image": None}}}))
    src = load_sources(path)
    assert src.cases["c1"]["pred"] == (tmp_path / "p" / "c1.nii.gz").resolve()
    assert str(src.cases["c1"]["ref"]) == "/abs/r.nii.gz" and src.cases["c1"]["image"] is None
    assert src.classes == {0: "background", 1: "liver"}
    assert sources_path_for(tmp_path / "m.csv") == path


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read the sources JSON"),
        (json.dumps({"classes": {}}), 'expected a "cases" object'),
        (json.dumps({"cases": {"c1": ["a", "b"]}}), "case 'c1' must map to an object"),
        (json.dumps({"cases": {"c1": {"pred": 3}}}), "'pred' must be a path string or null, got 3"),
    ],
)
def test_bad_sources(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_sources(path)


def test_missing_sources_file(tmp_path):
    with pytest.raises(InputError, match="s.json: sources file not found"):
        load_sources(tmp_path / "s.json")
