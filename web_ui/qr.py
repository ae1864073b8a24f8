"""A small QR Code encoder (ISO/IEC 18004): byte mode, error correction level M, versions
1-10 (up to 213 bytes), drawn as SVG. Enough for a softphone's account details; no library.

The structure follows the standard: data codewords -> Reed-Solomon blocks over GF(256)
(polynomial 0x11D) -> interleaving -> zigzag placement -> the mask (of eight) with the lowest
penalty score -> BCH-protected format (and, from version 7, version) information.
"""
from __future__ import annotations

from web_ui.html import Markup, fmt

# Version -> (EC codewords per block, [(number of blocks, data codewords per block), ...]), level M.
_BLOCKS_M = {
    1: (10, [(1, 16)]), 2: (16, [(1, 28)]), 3: (26, [(1, 44)]), 4: (18, [(2, 32)]), 5: (24, [(2, 43)]),
    6: (16, [(4, 27)]), 7: (18, [(4, 31)]), 8: (22, [(2, 38), (2, 39)]), 9: (22, [(3, 36), (2, 37)]),
    10: (26, [(4, 43), (1, 44)]),
}
_ALIGN = {1: [], 2: [6, 18], 3: [6, 22], 4: [6, 26], 5: [6, 30], 6: [6, 34], 7: [6, 22, 38], 8: [6, 24, 42],
          9: [6, 26, 46], 10: [6, 28, 50]}
_EC_M_BITS = 0b00
MAX_BYTES = 213


class QrTooLong(ValueError):
    """The text does not fit in a version-10 QR code at level M."""


# -- Reed-Solomon over GF(256) -------------------------------------------------------------------
_EXP = [0] * 512
_LOG = [0] * 256
_x = 1
for _i in range(255):
    _EXP[_i] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _gmul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _generator(degree: int) -> list[int]:
    g = [1]
    for i in range(degree):
        g = [c ^ _gmul(d, _EXP[i]) for c, d in zip(g + [0], [0] + g)]
        g = [x for x in g]
    return g


def rs_remainder(data: list[int], degree: int) -> list[int]:
    """The `degree` error-correction codewords of `data`."""
    gen = _generator(degree)
    rem = list(data) + [0] * degree
    for i in range(len(data)):
        coef = rem[i]
        if coef:
            for j in range(1, len(gen)):
                rem[i + j] ^= _gmul(gen[j], coef)
    return rem[len(data):]


# -- codewords -----------------------------------------------------------------------------------
def _capacity(version: int) -> int:
    return sum(n * k for n, k in _BLOCKS_M[version][1])


def _pick_version(nbytes: int) -> int:
    for v in range(1, 11):
        bits = 4 + (8 if v < 10 else 16) + 8 * nbytes
        if bits <= _capacity(v) * 8:
            return v
    raise QrTooLong(f"{nbytes} bytes do not fit in a QR code (at most {MAX_BYTES})")


def codewords(data: bytes, version: int) -> list[int]:
    """Data and EC codewords, interleaved, for `data` in byte mode."""
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    put(0b0100, 4)
    put(len(data), 8 if version < 10 else 16)
    for b in data:
        put(b, 8)
    cap = _capacity(version) * 8
    put(0, min(4, cap - len(bits)))
    put(0, (-len(bits)) % 8)
    words = [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)]
    pad = 0xEC
    while len(words) < _capacity(version):
        words.append(pad)
        pad ^= 0xEC ^ 0x11
    ec_len, groups = _BLOCKS_M[version]
    blocks, pos = [], 0
    for count, size in groups:
        for _ in range(count):
            blocks.append(words[pos:pos + size])
            pos += size
    ecs = [rs_remainder(b, ec_len) for b in blocks]
    out = []
    for i in range(max(len(b) for b in blocks)):
        out.extend(b[i] for b in blocks if i < len(b))
    for i in range(ec_len):
        out.extend(e[i] for e in ecs)
    return out


# -- matrix --------------------------------------------------------------------------------------
def _bch(value: int, poly: int, bits: int) -> int:
    v = value << bits
    top = poly.bit_length() - 1
    while v.bit_length() > top:
        v ^= poly << (v.bit_length() - 1 - top)
    return (value << bits) | v


class _Matrix:
    def __init__(self, version: int) -> None:
        self.version = version
        self.size = 17 + 4 * version
        self.dark = [[False] * self.size for _ in range(self.size)]
        self.fixed = [[False] * self.size for _ in range(self.size)]

    def set(self, x: int, y: int, dark: bool) -> None:
        self.dark[y][x] = dark
        self.fixed[y][x] = True

    def functions(self) -> None:
        n = self.size
        for i in range(n):
            self.set(6, i, i % 2 == 0)
            self.set(i, 6, i % 2 == 0)
        for cx, cy in ((3, 3), (n - 4, 3), (3, n - 4)):
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    x, y = cx + dx, cy + dy
                    if 0 <= x < n and 0 <= y < n:
                        d = max(abs(dx), abs(dy))
                        self.set(x, y, d not in (2, 4))
        pos = _ALIGN[self.version]
        for i, ax in enumerate(pos):
            for j, ay in enumerate(pos):
                if (i == 0 and j == 0) or (i == 0 and j == len(pos) - 1) or (i == len(pos) - 1 and j == 0):
                    continue
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        self.set(ax + dx, ay + dy, max(abs(dx), abs(dy)) != 1)
        self.format_bits(0)
        if self.version >= 7:
            bits = _bch(self.version, 0x1F25, 12)
            for i in range(18):
                b = bool((bits >> i) & 1)
                a, c = n - 11 + i % 3, i // 3
                self.set(a, c, b)
                self.set(c, a, b)

    def format_bits(self, mask: int) -> None:
        n = self.size
        bits = _bch((_EC_M_BITS << 3) | mask, 0x537, 10) ^ 0x5412
        for i in range(6):
            self.set(8, i, bool((bits >> i) & 1))
        self.set(8, 7, bool((bits >> 6) & 1))
        self.set(8, 8, bool((bits >> 7) & 1))
        self.set(7, 8, bool((bits >> 8) & 1))
        for i in range(9, 15):
            self.set(14 - i, 8, bool((bits >> i) & 1))
        for i in range(8):
            self.set(n - 1 - i, 8, bool((bits >> i) & 1))
        for i in range(8, 15):
            self.set(8, n - 15 + i, bool((bits >> i) & 1))
        self.set(8, n - 8, True)

    def place(self, words: list[int]) -> None:
        n = self.size
        bits = [(w >> (7 - i)) & 1 for w in words for i in range(8)]
        k = 0
        right = n - 1
        while right >= 1:
            if right == 6:
                right = 5
            for vert in range(n):
                for j in range(2):
                    x = right - j
                    upward = ((right + 1) & 2) == 0
                    y = n - 1 - vert if upward else vert
                    if not self.fixed[y][x] and k < len(bits):
                        self.dark[y][x] = bool(bits[k])
                        k += 1
            right -= 2

    def masked(self, mask: int) -> list[list[bool]]:
        n = self.size
        m = [row[:] for row in self.dark]
        for y in range(n):
            for x in range(n):
                if self.fixed[y][x]:
                    continue
                flip = (
                    (x + y) % 2 == 0, y % 2 == 0, x % 3 == 0, (x + y) % 3 == 0,
                    (x // 3 + y // 2) % 2 == 0, x * y % 2 + x * y % 3 == 0,
                    (x * y % 2 + x * y % 3) % 2 == 0, ((x + y) % 2 + x * y % 3) % 2 == 0,
                )[mask]
                if flip:
                    m[y][x] = not m[y][x]
        return m


def _penalty(m: list[list[bool]]) -> int:
    n = len(m)
    score = 0
    for lines in (m, [list(col) for col in zip(*m)]):
        for row in lines:
            run, prev = 0, None
            for v in row:
                if v == prev:
                    run += 1
                else:
                    if run >= 5:
                        score += run - 2
                    run, prev = 1, v
            if run >= 5:
                score += run - 2
            s = "".join("1" if v else "0" for v in row)
            score += 40 * (s.count("10111010000") + s.count("00001011101"))
    for y in range(n - 1):
        for x in range(n - 1):
            if m[y][x] == m[y][x + 1] == m[y + 1][x] == m[y + 1][x + 1]:
                score += 3
    dark = sum(v for row in m for v in row)
    score += 10 * (abs(dark * 20 - n * n * 10) // (n * n))
    return score


def encode(text: str | bytes) -> list[list[bool]]:
    """The module matrix (True = dark) of `text` (UTF-8) at level M, smallest version."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    version = _pick_version(len(data))
    m = _Matrix(version)
    m.functions()
    m.place(codewords(data, version))
    best, best_score = None, None
    for mask in range(8):
        m.format_bits(mask)
        candidate = m.masked(mask)
        s = _penalty(candidate)
        if best_score is None or s < best_score:
            best, best_score = candidate, s
            best_mask = mask
    m.format_bits(best_mask)
    return m.masked(best_mask)


def svg(text: str, *, label: str, scale: int = 5) -> Markup:
    """An SVG image of the QR code of `text` (with the 4-module quiet zone)."""
    matrix = encode(text)
    n = len(matrix)
    size = (n + 8) * scale
    path = "".join(f"M{(x + 4) * scale},{(y + 4) * scale}h{scale}v{scale}h-{scale}z"
                   for y, row in enumerate(matrix) for x, v in enumerate(row) if v)
    return fmt('<svg class="qr" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
               '<rect width="100%" height="100%" fill="#fff"/><path d="{}" fill="#000"/></svg>',
               size, size, size, size, label, path)
