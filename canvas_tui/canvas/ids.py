"""Putting Canvas ids (numeric, `self`, or `sis_*:value`) into URL path segments.

Canvas routes match a segment against `(?:[^/?.]|\\.(?!json(?:\\z|[/?])))+` after decoding, and
some proxies decode `%2F` early (CANVAS_API.md §3.3). So: percent-encode as UTF-8 (`/` -> `%2F`),
and switch to the `hex:<prefix>:<hex>` form whenever the decoded value could not survive routing:
a `?`, a `.json` that ends the value or precedes `/` or `?`, or surrounding whitespace (Canvas
strips it before parsing).
"""

from __future__ import annotations

import re
from urllib.parse import quote

_NEEDS_HEX = re.compile(r"\?|\.json(?:\Z|[/?])|\A\s|\s\Z")


def needs_hex(value: str) -> bool:
    return bool(_NEEDS_HEX.search(value))


def hex_form(prefix: str, value: str) -> str:
    """`hex_form("sis_course_id", "A/1")` -> `hex:sis_course_id:412f31`."""
    return f"hex:{prefix}:{value.encode('utf-8').hex()}"


def path_segment(ref: str) -> str:
    """One path segment for an id: `sis_course_id:A/1` -> `sis_course_id:A%2F1`.

    Numeric ids and `self` pass through; anything else that is not `prefix:value` is encoded as is
    (Canvas will answer 404, which is the right outcome for a bad id).
    """
    prefix, sep, value = ref.partition(":")
    if sep and prefix.startswith(("sis_", "lti_")) and needs_hex(value):
        ref = hex_form(prefix, value)
    # Keep ':' readable (Canvas's own links do); everything else reserved is escaped, '/' included.
    return quote(ref, safe=":-._~")
