"""Behaviour and items as text: the templates of m6-rec, and parsing their output back.

Two templates, both config keys of the m6-rec models (Python ``str.format`` fields):

* ``item_template`` (default :data:`DEFAULT_ITEM_TEMPLATE`) writes one item from its side
  data; a field names a column of the item side table (``{title}``, ``{year}``,
  ``{genres}``, any text column).  Years print as integers, a list column (the
  space-separated ``categorical_seq`` genres) as ``"A, B"``, a missing value as
  ``"unknown"``.  ml-100k item 0 reads
  ``"Kolya (1996), genres: Comedy"``.
* ``user_template`` (default :data:`DEFAULT_USER_TEMPLATE`) writes a user's training history;
  its one field ``{history}`` receives the item texts of the history, most recent first,
  joined by :data:`BEHAVIOUR_SEPARATOR`.  The history is capped by tokens, so the most recent
  behaviour always survives the cap.

:func:`parse_item_text` and :func:`parse_user_text` read back what a template wrote (the
template round trip the tests check).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from m6bench import ConfigError

DEFAULT_ITEM_TEMPLATE = "{title} ({year}), genres: {genres}"
DEFAULT_USER_TEMPLATE = "Watched, most recent first: {history}."
BEHAVIOUR_SEPARATOR = "; "
MISSING = "unknown"
HISTORY_FIELD = "history"


def template_fields(template: str) -> list[str]:
    """The field names of a ``str.format`` template, in order."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError as exc:
        raise ConfigError(f"m6-rec: the template {template!r} is not a valid format string "
                          f"({exc}); write fields as {{column}}.") from exc


def format_value(value: Any) -> str:
    """One side-data value as text: whole floats as integers (years), lists (genres) as
    ``"A, B"``, missing values (None, NaN, empty) as :data:`MISSING`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or MISSING
    return str(value).strip() or MISSING


def item_text(row: Mapping[str, Any], template: str = DEFAULT_ITEM_TEMPLATE) -> str:
    """One item written by ``template`` from its side-data ``row`` (column -> value)."""
    fields = template_fields(template)
    missing = [field for field in fields if field not in row]
    if missing:
        raise ConfigError(
            f"m6-rec: item_template {template!r} names {missing}, which the item side table "
            f"lacks (it has {sorted(row)}); use only those columns in item_template."
        )
    return template.format(**{field: format_value(row[field]) for field in fields})


def capped_history(history_items: Sequence[int], item_text_of: Callable[[int], str],
                   template: str = DEFAULT_USER_TEMPLATE, *, max_tokens: int | None = None,
                   count_tokens: Callable[[str], int] | None = None) -> list[int]:
    """The most recent items of a history whose text fits ``max_tokens`` tokens (at least
    the most recent one); see :func:`user_text`."""
    if template_fields(template) != [HISTORY_FIELD]:
        raise ConfigError(f"m6-rec: user_template {template!r} must have exactly one field, "
                          f"{{{HISTORY_FIELD}}}, where the history goes.")
    if not max_tokens:
        return [int(item) for item in history_items]
    count = count_tokens or (lambda text: len(text.split()))
    budget = max_tokens - count(template.format(history=""))
    kept: list[int] = []
    used = 0
    for item in history_items:
        cost = count(item_text_of(int(item))) + (count(BEHAVIOUR_SEPARATOR) if kept else 0)
        if kept and used + cost > budget:
            break
        kept.append(int(item))
        used += cost
    return kept


def user_text(history_items: Sequence[int], item_text_of: Callable[[int], str],
              template: str = DEFAULT_USER_TEMPLATE, *, max_tokens: int | None = None,
              count_tokens: Callable[[str], int] | None = None) -> str:
    """A user's history written by ``template``.

    :param history_items: the user's items, most recent first.
    :param item_text_of: item index -> its text (see :func:`item_text`).
    :param max_tokens: stop adding behaviours once the text would pass this many tokens
        (``count_tokens`` counts them, e.g. the encoder's tokenizer; by default
        whitespace-separated words), keeping at least the most recent one.
    """
    kept = capped_history(history_items, item_text_of, template, max_tokens=max_tokens,
                          count_tokens=count_tokens)
    return template.format(history=BEHAVIOUR_SEPARATOR.join(item_text_of(i) for i in kept))


def _pattern(template: str) -> re.Pattern[str]:
    """A regex matching what ``template`` writes, one named group per field."""
    pieces = []
    for literal, field, _, _ in string.Formatter().parse(template):
        pieces.append(re.escape(literal))
        if field:
            pieces.append(f"(?P<{field}>.*?)")
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)


def parse_item_text(text: str, template: str = DEFAULT_ITEM_TEMPLATE) -> dict[str, str]:
    """The field values (as formatted text) that ``template`` wrote into ``text``."""
    match = _pattern(template).match(text)
    if match is None:
        raise ValueError(f"{text!r} was not written by the item template {template!r}")
    return match.groupdict()


def parse_user_text(text: str, template: str = DEFAULT_USER_TEMPLATE) -> list[str]:
    """The item texts, most recent first, that ``template`` wrote into ``text``."""
    match = _pattern(template).match(text)
    if match is None:
        raise ValueError(f"{text!r} was not written by the user template {template!r}")
    history = match.group(HISTORY_FIELD)
    return history.split(BEHAVIOUR_SEPARATOR) if history else []
