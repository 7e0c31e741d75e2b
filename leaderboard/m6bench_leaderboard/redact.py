"""Credentials never leave the process: passwords in URLs and secret-named options become ***.

Records are redacted when they are written and again when they are read (records written
by older versions are cleaned when the site is built), and the CLI passes every message
that can hold a URL (storage, dataset options, errors) through :func:`redact_text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# scheme://user:password@host -> scheme://user:***@host (also a password with no user)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:\"'<>]*:)"
                           r"(?P<secret>[^\s/@\"'<>]+)(?P<tail>@)")
# A key names a secret when it ends with one of these words: password=, PGPASSWORD=, api_key=,
# auth_token= are secrets; max_tokens= and token_budget= are not.
_SECRET_WORDS = (r"(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key"
                 r"|secret[_\-]?key|private[_\-]?key|credentials?)")
# key=value and key: value where the key names a secret
_SECRET_OPTION = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_.\-])[A-Za-z0-9_.\-]*?" + _SECRET_WORDS + r"(?:=|: ?))"
    r"(?P<secret>[^\s&;,\"'<>]+)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"^[A-Za-z0-9_.\-]*?" + _SECRET_WORDS + "$", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with every credential replaced by ``***``."""
    if "://" not in text and "=" not in text and ":" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m["head"] + _hide(m["secret"]) + m["tail"], text)
    return _SECRET_OPTION.sub(lambda m: m["head"] + _hide(m["secret"]), text)


def _hide(secret: str) -> str:
    return secret if secret == REDACTED else REDACTED


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if isinstance(item, str) and item and _SECRET_KEY.search(str(key))
                else redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def needs_redaction(text: str) -> bool:
    """Whether ``text`` holds a credential :func:`redact_text` would hide.

    Called on every ledger line the leaderboard reads: a search finds nothing on most lines,
    and only a line with a hit is rewritten to compare (an already redacted one is not).
    """
    if not (_URL_PASSWORD.search(text) or _SECRET_OPTION.search(text)):
        return False
    return redact_text(text) != text
