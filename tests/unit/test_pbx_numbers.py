"""Dial patterns, permission classes and number normalisation."""
import pytest

from firmware.pbx.numbers import allowed, classify, matches, normalise, plan_for, specificity


@pytest.mark.parametrize("pattern,number,ok", [
    ("0X.", "0600100200", True),
    ("0X.", "06", False),
    ("0X.", "0", False),
    ("_00X.", "004930123", True),
    ("NXXXXXXXX", "600100200", True),
    ("NXXXXXXXX", "100100200", False),
    ("[5-7]XX", "601", True),
    ("[5-7]XX", "401", False),
    ("9!", "9", True),
    ("112", "112", True),
    ("+X.", "+48600100200", True),
    ("*", "anything", True),
])
def test_patterns(pattern, number, ok):
    assert matches(pattern, number) is ok


@pytest.mark.parametrize("bad", ["", "0X[", "0Y.", "[a]", "0.X"])
def test_bad_patterns_rejected(bad):
    with pytest.raises(ValueError):
        matches(bad, "0")


def test_specific_patterns_sort_first():
    pats = sorted(["X.", "00X.", "0X."], key=specificity)
    assert pats[0] == "00X."


def test_polish_classification():
    pl = plan_for("48")
    assert classify("600100200", pl) == "mobile"
    assert classify("+48600100200", pl) == "mobile"
    assert classify("226001002", pl) == "local"
    assert classify("0049301234567", pl) == "international"
    assert classify("+4930123", pl) == "international"
    assert classify("701234567", pl) == "premium"
    assert classify("800123456", pl) == "local"
    assert classify("112", pl) == "local"
    assert classify("201", pl, {"201"}) == "internal"


def test_bulgarian_classification():
    bg = plan_for("359")
    assert classify("0888123456", bg) == "mobile"
    assert classify("029876543", bg) == "local"
    assert classify("0900123", bg) == "premium"


def test_permissions():
    assert allowed({"mobile"}, "local")
    assert allowed({"mobile"}, "internal")
    assert not allowed({"mobile"}, "international")
    assert not allowed({"international"}, "premium")
    assert allowed({"premium"}, "premium")
    assert not allowed({"internal"}, "local")


def test_normalise_one_customer_many_spellings():
    pl = plan_for("48")
    assert normalise("+48 600-100-200", pl) == normalise("0048600100200", pl) == normalise("600100200", pl)
    bg = plan_for("359")
    assert normalise("0888123456", bg) == "+359888123456"
