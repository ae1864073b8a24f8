"""A tiny HTML helper: escaped-by-default formatting and page templates.

Every value put into HTML goes through `escape()` unless it is already `Markup` (HTML we built
ourselves). Page templates are `string.Template` files in web_ui/templates/; `render()`
escapes each substituted value the same way, so a template cannot receive raw user text.
"""
from __future__ import annotations

import html as _html
import string
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

TEMPLATES = Path(__file__).resolve().parent / "templates"


class Markup(str):
    """A string that is already safe HTML."""

    __slots__ = ()


def escape(value: Any) -> Markup:
    """HTML-escape `value` (quotes included) unless it is Markup; None becomes ''."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(_html.escape(str(value), quote=True))


def _arg(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return escape(value)


def fmt(template: str, *args: Any, **kwargs: Any) -> Markup:
    """`template.format(...)` with every argument escaped (the template itself is trusted);
    numbers pass through so format specs like {:.1f} work."""
    return Markup(template.format(*(_arg(a) for a in args), **{k: _arg(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    """Concatenate escaped parts."""
    return Markup(escape(sep).join(escape(p) for p in parts))


def attrs(**kw: Any) -> Markup:
    """Attributes: `attrs(class_="x", disabled=True, value=3)` -> ` class="x" disabled value="3"`.
    False/None values are left out; a trailing underscore is dropped; `_` becomes `-`."""
    out = []
    for k, v in kw.items():
        if v is None or v is False:
            continue
        name = k.rstrip("_").replace("_", "-")
        out.append(f" {name}" if v is True else f' {name}="{escape(v)}"')
    return Markup("".join(out))


@lru_cache(maxsize=None)
def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render(name: str, **ctx: Any) -> Markup:
    """Fill the template file `name` with escaped values (Markup passes through)."""
    return Markup(_template(name).substitute({k: escape(v) for k, v in ctx.items()}))
