"""The built-in protocols, registered through the same hook third-party plugins use."""

from __future__ import annotations

from m6bench.hookspecs import hookimpl
from m6bench.protocols import cuts
from m6bench.protocols.spec import ProtocolSpec


@hookimpl
def m6bench_register_protocols(register):
    ratios = {"ratios": [0.8, 0.1, 0.1]}
    register(ProtocolSpec("random", cuts.random_split,
                          "per-user random ratio split (RecBole's RS, default 8:1:1)", ratios))
    register(ProtocolSpec("loo", cuts.leave_one_out,
                          "leave-one-out by time: each user's last interaction is test, the "
                          "one before valid"))
    register(ProtocolSpec("temporal", cuts.temporal_split,
                          "global temporal cut: earliest 80% train, next 10% valid, last 10% "
                          "test", ratios))
    register(ProtocolSpec("cold-users", cuts.cold_users,
                          "10% / 10% of users held out entirely for valid / test",
                          {"ratios": [0.8, 0.1, 0.1]}))
    register(ProtocolSpec("cold-items", cuts.cold_items,
                          "10% / 10% of items held out entirely for valid / test",
                          {"ratios": [0.8, 0.1, 0.1]}))
    register(ProtocolSpec("xdomain-target", cuts.cross_domain_target,
                          "cross-domain target: all interactions of the other domains train; "
                          "the target domain (option target) is cut per user 8:1:1",
                          {"target": "target", "ratios": [0.8, 0.1, 0.1]}))
