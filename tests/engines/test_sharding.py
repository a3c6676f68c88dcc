"""Sharding a datalist across ranks and merging the per-rank tables (no process group needed)."""

from __future__ import annotations

import json

import pytest

from medrefine.engines.sharding import finish_sharded, merge_parts, part_path, shard_bounds, shard_cases
from medrefine.errors import InputError


@pytest.mark.parametrize("num_cases,world", [(n, w) for n in (1, 2, 3, 5, 7, 10) for w in (1, 2, 3, 4) if w <= n])
def test_blocks_cover_every_case_once_in_order(num_cases, world):
    cases = [f"case_{i}" for i in range(num_cases)]
    blocks = [shard_cases(cases, rank, world) for rank in range(world)]
    assert sum(blocks, []) == cases  # joined in rank order: the datalist, each case once
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes


def test_bounds_by_hand():
    assert [shard_bounds(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    with pytest.raises(ValueError, match=r"`rank` must be in \[0, world\).*rank=2, world=2"):
        shard_bounds(5, 2, 2)


def test_without_a_process_group_everything_is_one_shard(tmp_path):
    assert shard_cases(["a", "b", "c"]) == ["a", "b", "c"]
    assert part_path(tmp_path / "changes.csv") == tmp_path / "changes.csv"
    assert finish_sharded([tmp_path / "changes.csv"]) == [tmp_path / "changes.csv"]


def test_more_ranks_than_cases_is_refused():
    with pytest.raises(InputError, match=r"inference over 1 case\(s\) with 2 processes: expected at most 1"):
        shard_cases(["a"], 0, 2)


def test_part_names_keep_the_suffix(tmp_path):
    assert part_path(tmp_path / "changes.csv", 1, 2).name == "changes.part1of2.csv"
    assert part_path(tmp_path / "codes.json", 0, 3).name == "codes.part0of3.json"


def test_csv_parts_merge_in_rank_order_under_one_header(tmp_path):
    target = tmp_path / "predictions.csv"
    part_path(target, 0, 2).write_text("case,prob\nc0,0.1\nc1,0.2\n")
    part_path(target, 1, 2).write_text("case,prob\nc2,0.3")  # no final newline
    assert merge_parts([target], 2) == [target]
    assert target.read_text() == "case,prob\nc0,0.1\nc1,0.2\nc2,0.3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]  # parts removed


def test_json_parts_merge_and_keep_order(tmp_path):
    target = tmp_path / "codes.json"
    part_path(target, 0, 2).write_text(json.dumps({"s0": [0.0], "s1": [1.0]}))
    part_path(target, 1, 2).write_text(json.dumps({"s2": [2.0]}))
    merge_parts([target], 2)
    assert list(json.loads(target.read_text()).items()) == [("s0", [0.0]), ("s1", [1.0]), ("s2", [2.0])]


def test_merge_refuses_a_missing_part_and_mismatched_columns(tmp_path):
    target = tmp_path / "changes.csv"
    part_path(target, 0, 2).write_text("case,a\nc0,1\n")
    with pytest.raises(InputError, match=r"from all 2 ranks, found none for changes.part1of2.csv"):
        merge_parts([target], 2)
    part_path(target, 1, 2).write_text("case,b\nc1,1\n")
    with pytest.raises(ValueError, match=r"changes.part1of2.csv: expected the columns of changes.part0of2.csv \(case,a\), found case,b"):
        merge_parts([target], 2)
    assert not target.exists()


def test_json_key_in_two_parts_is_an_error(tmp_path):
    target = tmp_path / "codes.json"
    part_path(target, 0, 2).write_text(json.dumps({"s0": 1}))
    part_path(target, 1, 2).write_text(json.dumps({"s0": 2}))
    with pytest.raises(ValueError, match=r"keys \['s0'\] are in another rank's part too"):
        merge_parts([target], 2)
