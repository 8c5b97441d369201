"""The proof's report as text: the cohort table, each lever's share, ledger against invoice, the verdict."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from thrifty.cli.proof.run import POLICY_RULE


def print_report(r: dict[str, Any]) -> None:
    """The figures of a `run.run()` report, for a terminal."""
    b, t = r["baseline"], r["thrifty"]
    print(f"\n{'cohort':<14}{'calls':>6}{'base q':>8}{'thrifty q':>10}{'base USD':>12}{'thrifty USD':>13}{'saved':>8}")
    for name, c in r["cohorts"].items():
        saved = 1 - c["thrifty_usd"] / c["baseline_usd"] if c["baseline_usd"] else 0
        print(f"{name:<14}{c['calls']:>6}{c['baseline_quality']:>8.1f}{c['thrifty_quality']:>10.1f}"
              f"{c['baseline_usd']:>12.5f}{c['thrifty_usd']:>13.5f}{saved:>8.1%}")
    print(f"{'all':<14}{r['calls']:>6}{b['quality']:>8.1f}{t['quality']:>10.1f}{b['usd']:>12.5f}{t['usd']:>13.5f}"
          f"{r['saving']:>8.1%}")
    print("\nsaving by lever (the ledger's lever accounting; share of the ledger's saving):")
    for lever, saved in r["levers"].items():
        print(f"  {lever:<22} ${saved:>10.5f}  {r['lever_shares'].get(lever, 0):>7.1%}")
    rec = r["reconcile"]
    same = "equal" if Decimal(rec["ledger_usd"]) == Decimal(rec["thrifty_invoice_usd"]) else "NOT equal"
    print(f"\nledger ${rec['ledger_usd']} vs emulator invoice ${rec['thrifty_invoice_usd']} ({same}); baseline invoice "
          f"${rec['baseline_invoice_usd']} vs the ledger's counterfactual ${rec['ledger_baseline_usd']}")
    pol = r.get("policy")
    if pol:
        origin = f"trained on {pol['rows']} train-side rows (target {pol['target']:g})" if pol["trained"] \
            else f"from {pol['file']}"
        kind = ("prompt only" if not pol.get("cascade") else
                f"a cascade (answer stage over its answer and {pol['peer_model']}'s)" if pol.get("peer_model")
                else "a cascade (answer stage over its answer alone)")
        print(f"learned policy on the `{POLICY_RULE}` rule: {pol['cheap_model']} vs {pol['strong_model']}, {kind}, "
              f"threshold {pol['threshold']:.4f}, {origin}")
    verdict = "met" if r["target"]["met"] else "NOT met"
    print(f"target (-70% cost, <= 1 point lost overall and per cohort): {verdict}; saving {r['saving']:.1%}, "
          f"{r['quality_loss_points']:+.2f} points lost overall, worst cohort {r['worst_cohort']['name']} "
          f"({r['worst_cohort']['loss_points']:+.2f})")
    if r["failed"]["baseline"] or r["failed"]["thrifty"]:
        print(f"failed calls: {r['failed']}; e.g. {r['errors'][:2]}")

