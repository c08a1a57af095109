"""Read back a QR code the console served as inline SVG, with an independent decoder (zxing-cpp).

qrcode's SvgPathImage draws one unit square per dark module ("Mx,yH..V..H..z"); the squares are
painted into a grey-scale bitmap and handed to zxing, so the test reads what a phone would read.
"""
from __future__ import annotations

import re

import zxingcpp

SCALE = 4  # pixels per module: zxing wants a few per module to find the finder patterns


def decode_svg(svg: str) -> list[str]:
    size = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    assert size, "not an SVG with a viewBox"
    n = int(size.group(1)) * SCALE
    pixels = bytearray(b"\xff") * (n * n)
    for x, y in re.findall(r"M(\d+),(\d+)H", svg):
        left, top = int(x) * SCALE, int(y) * SCALE
        for row in range(top, top + SCALE):
            pixels[row * n + left: row * n + left + SCALE] = b"\x00" * SCALE
    image = memoryview(bytes(pixels)).cast("B", (n, n))
    return [code.text for code in zxingcpp.read_barcodes(image)]
