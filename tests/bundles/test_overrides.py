"""medrefine.bundle.overrides: --set values parsed as the READMEs write them, unknown keys refused."""

from __future__ import annotations

import pytest

from medrefine.bundle import parse_overrides
from medrefine.bundle.overrides import check_overrides, parse_override_value
from medrefine.errors import InputError

CONFIG = {"epochs": 2, "one_file_per_structure": False, "network_def": {"channels": [8, 16], "act": "relu"},
          "train": {"handlers": [{"_target_": "A", "interval": 1}]}}


@pytest.mark.parametrize("text, expected", [
    ("2", 2),
    ("1e-3", 1e-3),
    ("true", True),
    ("null", None),
    ("[8,16]", [8, 16]),
    ('"a b"', "a b"),
    ("['livr','spleen']", ["livr", "spleen"]),  # Python literal with single quotes, as the READMEs quote it
    ("{'liver': 1, 'spleen': 2}", {"liver": 1, "spleen": 2}),
    ("(1, 2)", [1, 2]),
    ("'cpu'", "cpu"),
    ("/data/x", "/data/x"),
    ("unet2.5d", "unet2.5d"),
    ("cohort", "cohort"),
    ("$@bundle_root + '/x'", "$@bundle_root + '/x'"),
    ("", ""),
])
def test_parse_override_value(text, expected):
    got = parse_override_value(text)
    assert got == expected and type(got) is type(expected)


def test_parse_overrides_keeps_the_new_key_marker():
    assert parse_overrides(["+extra=1", "structures=['a','b']"]) == {"+extra": 1, "structures": ["a", "b"]}
    with pytest.raises(InputError, match="key=value"):
        parse_overrides(["+=3"])


def test_known_keys_pass_and_the_marker_is_removed():
    got = check_overrides(CONFIG, {"epochs": 3, "network_def#channels": [4], "train#handlers#0#interval": 2,
                                   "+brand_new": "x", "bundle_root": "/b"})
    assert got == {"epochs": 3, "network_def#channels": [4], "train#handlers#0#interval": 2, "brand_new": "x",
                   "bundle_root": "/b"}


@pytest.mark.parametrize("key, expected", [
    ("one_file_per_structur", r"^--set one_file_per_structur: the config has no key 'one_file_per_structur'\. "
                              r"Did you mean 'one_file_per_structure'\? \(to add a new key on purpose write --set \+one_file_per_structur=\.\.\.\)$"),
    ("network_def#chanels", r"has no key 'chanels' under 'network_def'\. Did you mean 'channels'\?"),
    ("train#handlers#3#interval", r"has no key '3' under 'train#handlers'\."),
    ("epochs#x", r"has no key 'x' under 'epochs'\."),
])
def test_unknown_keys_are_refused_in_one_line(key, expected):
    with pytest.raises(InputError, match=expected) as info:
        check_overrides(CONFIG, {key: 1})
    assert "\n" not in str(info.value)
