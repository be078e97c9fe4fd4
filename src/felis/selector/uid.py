"""Calico's unique ids for selectors (``libcalico-go/lib/hash`` ``MakeUniqueID``)."""

from __future__ import annotations

import base64
import hashlib


def make_unique_id(prefix: str, content: str) -> str:
    """``prefix:`` + unpadded base64url of SHA-224(``prefix:content``)."""
    tagged = f"{prefix}:{content}"
    digest = hashlib.sha224(tagged.encode("utf-8")).digest()
    return f"{prefix}:" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def selector_uid(canonical: str) -> str:
    """The id Felix derives IP set names from; ``canonical`` must be the canonical form."""
    return make_unique_id("s", canonical)
