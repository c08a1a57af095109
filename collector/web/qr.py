"""The enrolment command as an inline SVG QR code, so a technician on-site reads it with a phone.

Inline SVG (no <img src=data:...>, no script) keeps the console's CSP as it is; the text is encoded
with error correction M, enough for a photo of a laptop screen.
"""
from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from markupsafe import Markup

MAX_CHARS = 1200  # a token command is ~250; anything longer is not something to type from a phone


def svg(text: str) -> Markup:
    if len(text) > MAX_CHARS:
        raise ValueError(f"QR text of {len(text)} characters is over {MAX_CHARS}")
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4,
                         image_factory=qrcode.image.svg.SvgPathImage)
    code.add_data(text)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    body = out.getvalue().decode("utf-8")
    body = body[body.index("<svg"):]  # drop the XML declaration: this goes inside an HTML page
    return Markup(body)  # noqa: S704 - qrcode writes only path data from the encoded bits, never the text
