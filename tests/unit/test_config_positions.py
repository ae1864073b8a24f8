"""The TOML position scanner: the line of every header, key, inline key and array element."""
import string
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config import toml_positions
from tests.conftest import load

EXPECTED = {
    ("title",): 2,
    ("system",): 4,
    ("system", "language"): 5,
    ("system", "quoted key"): 6,
    ("system", "dotted", "inner", "key"): 7,
    ("system", "after_multi"): 12,
    ("system", "literal_multi"): 13,
    ("system", "arr"): 16,
    ("system", "arr", 0): 17,
    ("system", "arr", 1): 19,
    ("system", "arr", 2): 19,
    ("system", "arr", 3): 20,
    ("system", "arr", 3, 1): 20,
    ("extension", 0): 23,
    ("extension", 0, "number"): 24,
    ("extension", 0, "inline", "b c", "d"): 25,
    ("extension", 1): 27,
    ("extension", 1, "number"): 28,
    ("route",): 30,
    ("route", "blacklist", 0): 31,
    ("route", "inbound", 0): 33,
    ("route", "inbound", 1): 36,
    ("route", "inbound", 1, "trunk"): 37,
    ("menu", 0, "item", 1): 43,
    ("menu", 0, "item", 1, "k"): 44,
    ("menu", 1): 45,
    ("menu", 1, "item", 0, "k"): 48,
    ("menu", 1, "settings", "x"): 50,
}


def test_torture_file_every_part_on_its_line():
    text = load("config/positions.toml").decode()
    tomllib.loads(text)
    pos = toml_positions(text)
    got = {k: pos.line_of(k) for k in EXPECTED}
    assert got == EXPECTED


def test_fake_headers_inside_strings_are_not_tables():
    pos = toml_positions(load("config/positions.toml").decode())
    assert ("not_a_table",) not in pos
    assert ("also",) not in pos


def test_missing_key_falls_back_to_its_table_header():
    pos = toml_positions(load("config/positions.toml").decode())
    assert pos.line_of(("extension", 1, "password")) == 27
    assert pos.line_of(("route", "inbound", 0, "destination")) == 33
    assert pos.line_of(("nothing",)) == 0


def test_crlf_line_endings():
    text = '[system]\r\nlanguage = "en"\r\n\r\n[[extension]]\r\nnumber = "201"\r\n'
    tomllib.loads(text)
    pos = toml_positions(text)
    assert pos.line_of(("extension", 0, "number")) == 5
    assert pos.line_of(("system", "language")) == 2


def test_escaped_quotes_and_multiline_quote_runs():
    text = ('a = "x \\" [b] y"\n'
            'b = """one ""two"" "three"""""\n'
            "c = '''it''s'''\n"
            'd = "\\u0041"\n'
            '"k\\"q" = 1\n')
    assert tomllib.loads(text)['k"q'] == 1
    pos = toml_positions(text)
    assert [pos.line_of((k,)) for k in ("a", "b", "c", "d", 'k"q')] == [1, 2, 3, 4, 5]


_keys = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8)
_scalars = st.one_of(st.integers(-1000, 1000), st.booleans(),
                     st.text(alphabet=string.ascii_letters + " #[]={}=,'", max_size=12))


def _fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_keys, st.lists(st.tuples(_keys, _scalars, st.integers(0, 2)),
                                          min_size=1, max_size=5, unique_by=lambda t: t[0])),
                min_size=1, max_size=5))
def test_generated_arrays_of_tables(tables):
    """Random [[name]] blocks with keys spread over lines: each key is found where it was written."""
    lines, expected = [], {}
    counts: dict[str, int] = {}
    for name, items in tables:
        idx = counts.get(name, 0)
        counts[name] = idx + 1
        lines.append(f"[[t.{name}]]  # header")
        expected[("t", name, idx)] = len(lines)
        for key, value, blank in items:
            lines.extend([""] * blank)
            lines.append(f"{key} = {_fmt(value)}   # note [x]")
            expected[("t", name, idx, key)] = len(lines)
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)
    pos = toml_positions(text)
    assert {k: pos.line_of(k) for k in expected} == expected
