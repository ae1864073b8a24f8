"""Number normalisation and permission classes for outbound calls (dial patterns themselves
are parsed by firmware.config, where the provisioning file is validated)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from firmware.config import match_pattern

PERMISSION_CLASSES = ("internal", "local", "mobile", "international", "premium")
"""Ordered from least to most expensive; an extension allowed a class may dial every class
before it, except premium which must be granted explicitly."""


def matches(pattern: str, number: str) -> bool:
    """Whether `number` matches a dial pattern (the provisioning file's syntax, see
    firmware.config.compile_pattern; a bad pattern raises ValueError)."""
    return match_pattern(pattern, number)


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key: literal-heavy, longer patterns first (like most PBXes pick the best match)."""
    p = pattern.lstrip("_")
    literals = sum(1 for c in p if c.isdigit() or c in "*#+")
    return (-literals, -len(p))


@dataclass(frozen=True)
class NumberingPlan:
    """How numbers dialled in the box's country are classified.

    Prefixes are matched on the national significant number (after removing the
    international prefix + country code, or the national trunk prefix).
    """

    country_code: str = "48"
    international_prefix: str = "00"
    national_prefix: str = ""
    mobile_prefixes: tuple[str, ...] = ()
    premium_prefixes: tuple[str, ...] = ()
    free_prefixes: tuple[str, ...] = ()
    emergency: tuple[str, ...] = ("112", "999", "911", "997", "998", "150", "160", "166")


# Mobile and premium ranges of the offices we sell to (national significant numbers).
PLANS = {
    "48": NumberingPlan("48", "00", "", ("45", "50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88"),
                        ("70", "30", "40"), ("800", "801")),
    "359": NumberingPlan("359", "00", "0", ("87", "88", "89", "98", "99", "43", "48"), ("90",), ("800",)),
    "7": NumberingPlan("7", "810", "8", ("9",), ("809", "803"), ("800",)),
    "44": NumberingPlan("44", "00", "0", ("7",), ("9", "87", "84"), ("80",)),
    "1": NumberingPlan("1", "011", "1", (), ("900", "976"), ("800", "888", "877", "866", "855", "844", "833")),
}


def plan_for(country_code: str) -> NumberingPlan:
    return PLANS.get(country_code, NumberingPlan(country_code))


def normalise(number: str, plan: NumberingPlan) -> str:
    """E.164 with '+' where the number is clearly external and complete, else digits as given.

    Used to match a customer across calls (missed-call lifecycle): "+48600100200",
    "0048600100200" and "600100200" are one customer in Poland.
    """
    n = re.sub(r"[\s\-().]", "", number or "")
    if not n:
        return n
    if n.startswith("+"):
        return n
    if plan.international_prefix and n.startswith(plan.international_prefix):
        return "+" + n[len(plan.international_prefix):]
    if plan.national_prefix and n.startswith(plan.national_prefix) and len(n) > 7:
        return "+" + plan.country_code + n[len(plan.national_prefix):]
    if not plan.national_prefix and len(n) >= 9 and n.isdigit():
        return "+" + plan.country_code + n
    return n


def classify(number: str, plan: NumberingPlan, internal_numbers: frozenset[str] | set[str] = frozenset()) -> str:
    """Permission class needed to dial `number` (one of PERMISSION_CLASSES)."""
    n = re.sub(r"[\s\-().]", "", number)
    if n in internal_numbers:
        return "internal"
    if n in plan.emergency:
        return "local"
    e164 = normalise(n, plan)
    if e164.startswith("+"):
        if not e164.startswith("+" + plan.country_code):
            return "international"
        nsn = e164[1 + len(plan.country_code):]
    elif plan.national_prefix and n.startswith(plan.national_prefix):
        nsn = n[len(plan.national_prefix):]
    else:
        nsn = n
    if any(nsn.startswith(p) for p in plan.free_prefixes):
        return "local"
    if any(nsn.startswith(p) for p in plan.premium_prefixes):
        return "premium"
    if any(nsn.startswith(p) for p in plan.mobile_prefixes):
        return "mobile"
    return "local"


def allowed(permissions: frozenset[str] | set[str] | tuple[str, ...], needed: str) -> bool:
    """Whether an extension with `permissions` may place a call needing class `needed`.

    `permissions` is the set of classes granted; a single class also grants the cheaper
    ones before it (premium never implied).
    """
    granted = set(permissions)
    if needed in granted:
        return True
    if needed == "premium":
        return False
    rank = PERMISSION_CLASSES.index(needed)
    return any(p in PERMISSION_CLASSES and p != "premium" and PERMISSION_CLASSES.index(p) >= rank for p in granted)


def apply_route(number: str, strip: int, prepend: str) -> str:
    return prepend + number[strip:]
