"""The QR encoder of the softphone page, checked by an independent decoder (zxing-cpp)."""
from __future__ import annotations

import pytest

from web_ui.qr import MAX_BYTES, QrTooLong, encode, rs_remainder, svg

np = pytest.importorskip("numpy")
zxingcpp = pytest.importorskip("zxingcpp")


def _image(matrix: list[list[bool]], scale: int = 4):
    n = len(matrix)
    a = np.full(((n + 8) * scale, (n + 8) * scale), 255, np.uint8)
    for y, row in enumerate(matrix):
        for x, v in enumerate(row):
            if v:
                a[(y + 4) * scale:(y + 5) * scale, (x + 4) * scale:(x + 5) * scale] = 0
    return a


@pytest.mark.parametrize("text", ["201", "sip:201@192.168.1.10:5060", "ż" * 40, "x" * 100,
                                  "sip:201@box:5060\nuser: 201\npassword: Lh9VD0qHPTKQ8yNVv7sTn7mV\nserver: box:5060",
                                  "y" * MAX_BYTES])
def test_decoder_reads_back_what_was_encoded(text):
    matrix = encode(text)
    assert len(matrix) in range(21, 58, 4)
    found = zxingcpp.read_barcodes(_image(matrix))
    assert [r.text for r in found] == [text]


def test_every_version_from_1_to_10_decodes():
    sizes = set()
    for n in (5, 20, 35, 55, 80, 100, 120, 150, 180, 210):
        m = encode("a" * n)
        sizes.add(len(m))
        assert zxingcpp.read_barcodes(_image(m))[0].text == "a" * n
    assert sizes == {21 + 4 * v for v in range(10)}


def test_reed_solomon_known_vector():
    data = [0x10, 0x20, 0x0C, 0x56, 0x61, 0x80, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11]
    assert rs_remainder(data, 10) == [0xA5, 0x24, 0xD4, 0xC1, 0xED, 0x36, 0xC7, 0x87, 0x2C, 0x55]


def test_too_long_and_svg_output():
    with pytest.raises(QrTooLong):
        encode("z" * (MAX_BYTES + 1))
    out = svg("201", label='<ext "201">')
    assert out.startswith('<svg class="qr"') and "&lt;ext &quot;201&quot;&gt;" in out
