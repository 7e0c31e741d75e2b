"""The README's speed tables: compare_recbole.py's and compare_peers.py's ledger lines,
m6bench beside each peer with the spread of its repetitions, then the scripts' checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from results_format import four, markdown


def _spread(side: Mapping[str, Any], key: str) -> str:
    low, mid = side.get(f"{key}_min"), side.get(f"{key}_median")
    if low is None or mid is None:
        value = side.get(key)
        return "—" if value is None else f"{value:.3g}"
    return f"{low:.3g} / {mid:.3g}"


def _ratio(a: Any, b: Any) -> str:
    return "—" if not a or not b else f"{a / b:.1f}x"


def render_speed(table: Any, records: list[dict[str, Any]]) -> str:
    body = []
    for line in records:
        m6, peer = line.get("m6bench") or {}, line.get("recbole") or {}
        closed = " (fit)" if m6.get("epochs") in (None, 1) and "ease" in line["model"] else ""
        body.append([
            f"{line['model']} / {line.get('peer_model')}{closed}", line["dataset"],
            f"{_spread(m6, 'epoch_s')} · {_spread(peer, 'epoch_s')}",
            _ratio(peer.get("epoch_s_median") or peer.get("epoch_s"),
                   m6.get("epoch_s_median") or m6.get("epoch_s")),
            f"{_spread(m6, 'eval_s')} · {_spread(peer, 'eval_s')}",
            _ratio(peer.get("eval_s_median") or peer.get("eval_s"),
                   m6.get("eval_s_median") or m6.get("eval_s")),
            f"{four(m6.get('ndcg10'))} / {four(peer.get('ndcg10'))}",
        ])
    headers = ["m6bench / RecBole", "data", "s/epoch min / median: m6 · rb", "epoch x",
               "s/eval min / median: m6 · rb", "eval x", "NDCG@10 m6 / rb"]
    text = markdown(headers, body)
    checks = [c for line in records for c in line.get("checks") or []]
    if checks:
        passed = sum(bool(c.get("passed")) for c in checks)
        text += f"\n\n{passed} of {len(checks)} acceptance checks pass (the script's `--check`)."
    return text


def _ms(side: Mapping[str, Any], key: str) -> str:
    """(min / median) milliseconds of a compare_peers side's ``key`` seconds."""
    pair = side.get(f"{key}_min"), side.get(f"{key}_median")
    return "—" if None in pair else " / ".join(f"{1000 * v:,.0f}" if v >= 0.1
                                               else f"{1000 * v:.3g}" for v in pair)


def render_speed_peers(table: Any, records: list[dict[str, Any]]) -> str:
    """compare_peers.py's lines: m6bench beside each peer, then its PASS/FAIL checks."""
    body, checks = [], [c for line in records for c in line["checks"]]
    for line in records:
        m6, ndcg, model = line["m6bench"], line["metrics"]["test"], line["model"]
        for peer, theirs in line["peers"].items():
            wall = f"{_spread(m6, 'wall_s')} · {_spread(theirs, 'wall_s')}"
            body.append([f"{model} / {peer}", line["dataset"],
                         f"{_ms(m6, 'epoch_s')} · {_ms(theirs, 'epoch_s')}",
                         _ratio(m6.get("epoch_s_median"), theirs.get("epoch_s_median")),
                         wall if model == "bpr-mf" else "—",
                         f"{_ms(m6, 'eval_s')} · {_ms(theirs, 'eval_s')}",
                         f"{four(ndcg.get('m6bench ndcg@10'))} / "
                         f"{four(ndcg.get(f'{peer} ndcg@10'))}"])
    headers = ["m6bench / peer", "data", "ms/epoch (EASE: fit) min / median: m6 · peer",
               "m6 / peer", "training wall s: m6 · peer", "test eval ms: m6 · peer's own",
               "NDCG@10 m6 / peer"]
    marks = {True: "PASS", False: "FAIL", None: "n/a"}
    listed = "\n".join(f"- {marks[c['passed']]} {c['check']}: {c['value']:.3f} (target "
                       f"{c['target']})" for c in checks if c["value"] is not None)
    passed = sum(bool(c["passed"]) for c in checks)
    return (f"{markdown(headers, body)}\n\n{passed} of {len(checks)} acceptance checks "
            f"pass:\n\n{listed}")


# ================================================================================ boards
