"""Provisioning file (TOML) loading and validation.

Placeholder until the full schema lands: checks TOML syntax with a line number.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a provisioning file."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check_file(path: str) -> list[ConfigIssue]:
    try:
        with open(path, "rb") as f:
            tomllib.load(f)
    except FileNotFoundError:
        return [ConfigIssue(path, 0, "file not found")]
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", 0) or 0
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        if not line and m:
            line = int(m.group(1))
        return [ConfigIssue(path, line, f"TOML syntax error: {e}")]
    return []
