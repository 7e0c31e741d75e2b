"""What the kit found: one :class:`Finding` per rule and subject, gathered in a report.

Also the two signals a check raises (:class:`RuleBroken`, :class:`NotChecked`) and the
helpers that turn an exception or a value into one line of a finding.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m6bench import M6BenchError

PASS, FAIL, SKIP = "pass", "fail", "skip"

# Frames in the kit's own modules are never where a plugin author should look.
_KIT_FOLDER = Path(__file__).resolve().parent


class RuleBroken(Exception):
    """Raised inside a check to record a failure and stop checking that subject."""

    def __init__(self, rule: str, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.rule, self.detail, self.fix = rule, detail, fix


class NotChecked(Exception):
    """Raised inside a check when the rule does not apply to this subject (with why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Finding:
    """The outcome of one rule for one subject (a model, a component, a hook or the package)."""

    plugin: str
    subject: str
    rule: str
    status: str
    detail: str = ""
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def message(self) -> str:
        """``plugin X, model Y: rule Z broken: what happened. Fix: ...`` (or a pass/skip line)."""
        head = f"plugin {self.plugin!r}, {self.subject}: rule {self.rule!r}"
        if self.status == FAIL:
            return f"{head} broken: {sentence(self.detail)} Fix: {sentence(self.fix)}"
        if self.status == SKIP:
            return f"{head} not checked: {sentence(self.detail)}"
        return f"{head} holds" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ConformanceReport:
    """Every rule checked for one plugin, passed, failed or skipped (with the reason)."""

    plugin: str
    distribution: str
    version: str
    device: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.failed]

    @property
    def ok(self) -> bool:
        return not self.failures

    def rules(self, status: str = PASS) -> set[tuple[str, str]]:
        """``(subject, rule)`` pairs with ``status``, for tests that ask what was checked."""
        return {(f.subject, f.rule) for f in self.findings if f.status == status}

    def record(self, subject: str, rule: str, status: str, detail: str = "",
               fix: str = "") -> None:
        self.findings.append(Finding(self.plugin, subject, rule, status, detail, fix))

    def recorded(self, subject: str) -> set[str]:
        """The rules with a finding for ``subject`` so far."""
        return {f.rule for f in self.findings if f.subject == subject}

    def failure_text(self) -> str:
        n = len(self.failures)
        lines = [f"{n} conformance rule{'s' if n != 1 else ''} broken by plugin "
                 f"{self.plugin!r} (distribution {self.distribution} {self.version}, device "
                 f"{self.device}):"]
        lines += [f"  - {f.message()}" for f in self.failures]
        return "\n".join(lines)

    def summary(self) -> str:
        counts = {s: sum(f.status == s for f in self.findings) for s in (PASS, FAIL, SKIP)}
        lines = [f"plugin {self.plugin!r} ({self.distribution} {self.version}) on "
                 f"{self.device}: {counts[PASS]} passed, {counts[FAIL]} failed, "
                 f"{counts[SKIP]} not checked"]
        lines += [f"  [{f.status}] {f.message()}" for f in self.findings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class ConformanceError(M6BenchError):
    """A plugin broke one or more conformance rules; :attr:`report` has every finding."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(report.failure_text())
        self.report = report


def describe(exc: BaseException) -> str:
    """``Type: message (at file.py:12 in fn)``, pointing at the innermost frame outside
    torch and the kit, which is where a plugin author should look."""
    text = f"{type(exc).__name__}: {exc}".strip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f"{os.sep}torch{os.sep}" not in f.filename
              and Path(f.filename).resolve().parent != _KIT_FOLDER]
    if frames:
        last = frames[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


def short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sentence(text: str) -> str:
    """One line ending in a full stop: every finding prints as a single line, so a
    multi-line error (an import traceback) is joined with `` / ``."""
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if text.endswith((".", "?", "!")) and not text.endswith("...") else text + "."
