"""lengths.png drawn with numpy and written with zlib: a bar histogram, the max_length line, axes and
numeric tick labels.

Why not matplotlib: importing it costs 0.4-0.8 s of Python on every prepare run, a fifth of the whole
cold stage on a 2-core box and most of a warm (all cached) one, for one small chart whose numbers are
also in prepare_report.md/.json and in the terminal histogram. Deterministic bytes (no timestamps)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

W, H = 700, 350
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 14, 34
BAR, LINE, AXIS, GRID = (76, 114, 176), (196, 78, 82), (40, 40, 40), (225, 225, 225)
# 3x5 digits (rows top to bottom, 3 bits each, MSB = left column)
DIGITS = {"0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
          "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
          "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7)}
SCALE = 2  # glyph pixel size


def _text(img: np.ndarray, s: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    """Digits with their top-left corner at (x, y); anything outside the image is clipped."""
    for n, ch in enumerate(s):
        rows = DIGITS.get(ch)
        if rows is None:
            continue
        gx = x + n * 4 * SCALE
        for r, bits in enumerate(rows):
            for c in range(3):
                if bits >> (2 - c) & 1:
                    y0, x0 = y + r * SCALE, gx + c * SCALE
                    img[max(y0, 0):max(y0 + SCALE, 0), max(x0, 0):max(x0 + SCALE, 0)] = color


def _ticks(lo: float, hi: float, n: int = 5) -> list[int]:
    """About n round integer ticks in [lo, hi]."""
    span = max(hi - lo, 1.0)
    raw = span / n
    step = float(10 ** np.floor(np.log10(raw)))
    step *= next((m for m in (1, 2, 5, 10) if m * step >= raw), 10)
    step = max(step, 1.0)
    first = np.ceil(lo / step) * step
    return [int(v) for v in np.arange(first, hi + step * 0.001, step)]


def histogram_png(lengths: np.ndarray, max_length: int, path: Path, bins: int = 60) -> None:
    img = np.full((H, W, 3), 255, dtype=np.uint8)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    x_lo = 0.0
    x_hi = float(max(int(lengths.max()) if len(lengths) else 1, max_length)) * 1.04
    counts, edges = np.histogram(lengths, bins=bins, range=(float(lengths.min()) if len(lengths) else 0.0,
                                                          float(lengths.max()) if len(lengths) else 1.0))
    top = max(int(counts.max()) if len(counts) else 1, 1) * 1.05

    def px(v: float) -> int:
        return LEFT + round((v - x_lo) / (x_hi - x_lo) * (pw - 1))

    def py(c: float) -> int:
        return TOP + ph - 1 - round(c / top * (ph - 1))

    for t in _ticks(0, top):  # horizontal grid + y labels
        y = py(t)
        img[y, LEFT:LEFT + pw] = GRID
        label = str(t)
        _text(img, label, LEFT - 6 - len(label) * 4 * SCALE, y - 5, AXIS)
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):  # bars
        if c:
            x0, x1 = px(a), max(px(b) - 1, px(a))
            img[py(c):TOP + ph, x0:x1 + 1] = BAR
    x = px(max_length)  # max_length: dashed vertical line
    for y in range(TOP, TOP + ph, 8):
        img[y:y + 5, max(x - 1, 0):x + 1] = LINE
    img[TOP:TOP + ph, LEFT] = AXIS  # axes
    img[TOP + ph - 1, LEFT:LEFT + pw] = AXIS
    for t in _ticks(x_lo, x_hi):  # x ticks + labels
        x = px(t)
        if x >= LEFT + pw:
            continue
        img[TOP + ph:TOP + ph + 4, x] = AXIS
        label = str(t)
        _text(img, label, x - len(label) * 2 * SCALE, TOP + ph + 8, AXIS)
    label = str(max_length)
    _text(img, label, min(px(max_length) + 4, W - len(label) * 4 * SCALE), TOP + 2, LINE)
    path.write_bytes(encode_png(img))


def encode_png(img: np.ndarray) -> bytes:
    """An RGB uint8 array (h, w, 3) as PNG bytes (filter 0 on every row)."""
    h, w, _ = img.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), img.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
