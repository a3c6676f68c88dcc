"""Tests of medrefine.data.classes.find_classes: the class table beside a dataset's files."""

from __future__ import annotations

import json

import pytest

from medrefine.data.classes import find_classes
from medrefine.errors import InputError


def test_find_classes_in_the_parent_folder(tmp_path):
    (tmp_path / "cohort" / "labels_noisy").mkdir(parents=True)
    (tmp_path / "cohort" / "classes.json").write_text(json.dumps({"1": "liver"}))
    table, where = find_classes(tmp_path / "cohort" / "labels_noisy")
    assert table == {0: "background", 1: "liver"} and where == (tmp_path / "cohort" / "classes.json").resolve()


def test_find_classes_from_a_datalist_and_in_order(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "datalist.json").write_text(json.dumps({"labels": {"0": "background", "2": "kidney"}, "training": []}))
    table, where = find_classes(tmp_path / "a", tmp_path / "b")
    assert table == {0: "background", 2: "kidney"} and where.name == "datalist.json"
    (tmp_path / "classes.json").write_text(json.dumps({"1": "spleen"}))  # a's parent now has one: it comes first
    assert find_classes(tmp_path / "a", tmp_path / "b")[0] == {0: "background", 1: "spleen"}


def test_find_classes_none_and_bad_file(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    assert find_classes(tmp_path / "x" / "y") is None
    (tmp_path / "x" / "classes.json").write_text("{not json")
    with pytest.raises(InputError, match="classes.json"):
        find_classes(tmp_path / "x" / "y")
