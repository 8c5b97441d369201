"""Training and evaluating learned routing policies (`thrifty train router`, `thrifty eval router
--policy`): the offline half of routing/learned.py, apart so that the gateway's serving path
(router -> learned) never imports the evaluation code (which imports the router).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from thrifty.errors import ThriftyError
from thrifty.routing.features import RequestFeatures
from thrifty.routing.learned import (  # noqa: F401 (digest and load_policy: what callers of training use)
    AnswerStage, Consistency, Embed, Logistic, Policy, _folds, cheap_vector, digest, fit_logistic, fit_with_cv,
    load_policy, out_of_fold,
)


def split_rows(rows: Sequence[Any], holdout: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(train, held out): each prompt's side is fixed by a seeded hash of its text, so the same
    `--seed` splits the same file the same way and a duplicated prompt never sits on both sides."""
    train, held = [], []
    for row in rows:
        h = int.from_bytes(hashlib.sha256(f"{seed}:{row.prompt}".encode()).digest()[:8], "big") / 2 ** 64
        (held if h < holdout else train).append(row)
    return train, held


def pick_models(data: Any, setup: Any, strong: str | None, weak: str | None) -> tuple[str, str]:
    """(strong, cheap): by default the cheapest model of the weakest tier, and the best-scoring model
    of the tiers above it (not the best-scoring model overall: when the cheap tier is also the
    best, there is still a choice to learn, and the evaluation says there is no trade-off)."""
    from thrifty.routing.eval import model_points

    for name, value in (("--strong", strong), ("--weak", weak)):
        if value is not None and value not in data.models:
            raise ThriftyError(f"{name} {value!r} has no outcome in every row (models: {', '.join(data.models)})")
    if strong is not None and weak is not None:
        return strong, weak
    order = setup.routing.order()
    if len(order) < 2:
        raise ThriftyError("routing has one tier: a policy chooses between two")
    pts = model_points(data, sorted(set(setup.models.values())))
    if weak is None:
        weak = min((setup.models[d] for d in setup.routing.tiers[order[0]]), key=lambda m: pts[m].cost)
    if strong is None:
        above = {setup.models[d] for t in order[1:] for d in setup.routing.tiers[t]} - {weak}
        if not above:
            raise ThriftyError(f"no model above the cheap tier's {weak} to choose against")
        strong = max(sorted(above), key=lambda m: (pts[m].quality, -pts[m].cost))
    return strong, weak


def pick_tiers(setup: Any, cheap_model: str, strong_model: str) -> tuple[str, str]:
    """The weakest tier that serves the cheap model, and the weakest tier above it that serves the strong one."""
    order = setup.routing.order()

    def tier_of(model: str, above: int) -> str | None:
        for i, tier in enumerate(order):
            if i > above and any(setup.models.get(d, d) == model for d in setup.routing.tiers[tier]):
                return tier
        return None

    cheap = tier_of(cheap_model, -1) or order[0]
    strong = tier_of(strong_model, order.index(cheap))
    if strong is None:
        if cheap == order[-1]:
            raise ThriftyError(f"the cheap model {cheap_model} is in the strongest tier ({cheap}): "
                               "there is no stronger tier for the policy to choose")
        strong = order[-1]
    return cheap, strong


def labels(rows: Sequence[Any], cheap_model: str, strong_model: str) -> np.ndarray:
    """1 where the cheap model scored at least what the strong one did (ties: the cheap one is as good)."""
    return np.array([1.0 if r.outcomes[cheap_model].score >= r.outcomes[strong_model].score - 1e-9 else 0.0
                     for r in rows])


def threshold_grid(p: np.ndarray, scores: tuple[np.ndarray, np.ndarray], costs: tuple[np.ndarray, np.ndarray],
                   steps: int = 20, strong_cost: float | None = None) -> list[dict[str, Any]]:
    """Thresholds at every 1/steps of strong-tier share, with the mean quality and cost each gives.

    `scores` and `costs` are (cheap, strong) per row; a row goes to the strong tier when its
    probability is below the threshold. `strong_cost` (default: the mean of the strong costs) is
    what `cost_vs_strong` divides by: a cascade's escalated cost is cheap + peer + strong, but it is
    compared with the strong model alone."""
    (sw, ss), (cw, cs) = scores, costs
    n = len(p)
    sorted_p = np.sort(p)
    out: list[dict[str, Any]] = []
    seen: set[float] = set()
    strong_q = float(ss.mean())
    strong_c = float(cs.mean()) if strong_cost is None else strong_cost
    for k in range(steps + 1):
        cut = (n * k) // steps
        t = 0.0 if cut == 0 else (1.01 if cut >= n else float(sorted_p[cut]))
        t = round(t, 6)
        if t in seen:
            continue
        seen.add(t)
        strong = p < t
        q = float(np.where(strong, ss, sw).mean())
        c = float(np.where(strong, cs, cw).mean())
        out.append({"threshold": t, "strong_share": float(strong.mean()), "quality": q, "cost_usd": c,
                    "quality_vs_strong": q / strong_q if strong_q else None,
                    "cost_vs_strong": c / strong_c if strong_c else None})
    return out


def choose_threshold(grid: Sequence[dict[str, Any]], target_quality: float) -> float:
    """The cheapest grid point whose quality reaches the target; else the best quality."""
    good = [g for g in grid if g["quality"] >= target_quality - 1e-12]
    if good:
        return min(good, key=lambda g: (g["cost_usd"], -g["quality"]))["threshold"]
    return max(grid, key=lambda g: (g["quality"], -g["cost_usd"]))["threshold"]


def pick_peer(setup: Any, cheap_tier: str, weak: str, peer: str | None, models: Sequence[str]) -> str | None:
    """The model whose answer the answer stage compares the cheap one with: `peer` when given, else
    the model of the deployment the gateway samples (`Router.peer`: the cheap tier's next deployment
    by price, the cheap model's own deployment serving first); None when the tier has no other model."""
    if peer is not None:
        if peer not in models:
            raise ThriftyError(f"--peer {peer!r} has no outcome in the rows (models: {', '.join(models)})")
        if peer == weak:
            raise ThriftyError(f"--peer {peer!r} is the cheap model itself")
        return peer
    from thrifty.routing.eval import build_router

    router = build_router(setup.routing, setup)
    for name in router.ranked[cheap_tier]:
        model = setup.models.get(name, name)
        if model != weak:
            return model
    return None


def train_answer_stage(data: Any, weak: str, strong: str, peer: str | None, consistency: Consistency, *,
                       target: float, folds: int, seed: int) -> tuple[AnswerStage | None, dict[str, Any]]:
    """The cascade's answer stage, fitted on the rows that recorded the cheap answer (and the peer's),
    or None with the reason when they are too few or of one kind."""
    idx = [i for i, r in enumerate(data.rows) if r.outcomes[weak].answer is not None
           and (peer is None or (peer in r.outcomes and r.outcomes[peer].answer is not None))]
    info: dict[str, Any] = {"rows": len(idx), "peer_model": peer}
    rows = [data.rows[i] for i in idx]
    y = labels(rows, weak, strong)
    if len(idx) < 2 * folds or y.min() == y.max():
        info["skipped"] = (f"{len(idx)} rows with the recorded answers of {weak}" + (f" and {peer}" if peer else "")
                           + ": too few, or only one kind, to learn from")
        return None, info
    stage = AnswerStage(Logistic((), 0.0), 0.0, peer, consistency)
    X = np.array([stage.vector(data.features[i], r.outcomes[weak].answer or "",
                               r.outcomes[peer].answer if peer else None, r.outcomes[weak].finish_reason)
                  for i, r in zip(idx, rows)])
    stage.model, p = fit_with_cv(X, y, _folds(len(y), folds, seed))
    scores = (np.array([r.outcomes[weak].score for r in rows]), np.array([r.outcomes[strong].score for r in rows]))
    cw = np.array([data.costs[i][weak] for i in idx])
    cs = np.array([data.costs[i][strong] for i in idx])
    cp = np.array([data.costs[i][peer] for i in idx]) if peer else np.zeros(len(idx))
    # The cascade pays the cheap model (and the peer) on every call, the strong one on escalation.
    stage.grid = threshold_grid(p, scores, (cw + cp, cw + cp + cs), strong_cost=float(cs.mean()))
    stage.threshold = choose_threshold(stage.grid, target * float(scores[1].mean()))
    info["positive_share"] = float(y.mean())
    return stage, info


def train_policy(rows: Sequence[Any], setup: Any, *, embed: Embed | None = None, target: float = 0.95,
                 folds: int = 5, seed: int = 0, strong: str | None = None, weak: str | None = None,
                 trained_on: dict[str, Any] | None = None, output_tokens: int = 256,
                 answer_stage: bool | None = None, peer: str | None = None) -> Policy:
    """Fit the policy on labelled outcome rows (`routing.eval.Row`) for the routing `setup`.

    The thresholds' grid and the chosen threshold come from out-of-fold probabilities (each
    training row scored by a model that did not see it), so the expected figures in the file are
    not in-sample; the models themselves are refitted on every training row.

    `answer_stage` (default: when the rows recorded the cheap model's answers) also fits the
    cascade's answer stage (`train_answer_stage`) against `peer` (default `pick_peer`); True makes
    its absence an error."""
    from thrifty.routing.eval import prepare

    # With both models named, rows need outcomes of those two only (what the shadow lane exports).
    pair = (strong, weak) if strong is not None and weak is not None else None
    data = prepare(rows, setup, output_tokens=output_tokens, models=pair)
    strong, weak = pick_models(data, setup, strong, weak)
    if strong == weak:
        raise ThriftyError(f"the strong and the cheap model are the same ({strong}): nothing to choose between")
    cheap_tier, strong_tier = pick_tiers(setup, weak, strong)
    y = labels(data.rows, weak, strong)
    if len(data.rows) < 2 * folds or y.min() == y.max():
        raise ThriftyError(f"{len(data.rows)} usable training rows, {int(y.sum())} where {weak} is as good as "
                           f"{strong}: too few, or only one kind, to learn from")
    scores = (np.array([r.outcomes[weak].score for r in data.rows]),
              np.array([r.outcomes[strong].score for r in data.rows]))
    costs = (np.array([c[weak] for c in data.costs]), np.array([c[strong] for c in data.costs]))
    target_q = target * float(scores[1].mean())
    split = _folds(len(y), folds, seed)
    X = np.array([cheap_vector(f) for f in data.features])
    cheap, p = fit_with_cv(X, y, split)
    grid = threshold_grid(p, scores, costs)
    policy = Policy(cheap_tier, strong_tier, weak, strong, cheap, choose_threshold(grid, target_q), grid=grid)
    if embed is not None:
        E = np.asarray(embed([r.prompt for r in data.rows]), dtype=np.float64)
        model, pe = fit_with_cv(np.hstack([X, E]), y, split)
        policy.embedding, policy.embedding_grid = model, threshold_grid(pe, scores, costs)
        policy.embedding_threshold = choose_threshold(policy.embedding_grid, target_q)
    answer_info = None
    answered = any(r.outcomes[weak].answer is not None for r in data.rows)
    if answer_stage or (answer_stage is None and answered):
        peer_model = pick_peer(setup, cheap_tier, weak, peer, sorted({m for r in data.rows for m in r.outcomes}))
        esc = setup.routing.escalation
        consistency = Consistency(esc.consistency.mode, esc.consistency.threshold)
        policy.answer, answer_info = train_answer_stage(data, weak, strong, peer_model, consistency, target=target,
                                                        folds=folds, seed=seed)
        if policy.answer is None and answer_stage:
            raise ThriftyError(f"no answer stage: {answer_info['skipped']}")
        if answer_stage is None and policy.answer is not None:
            reason = _cascade_does_not_pay(policy, target_q)
            if reason is not None:  # served prompt only: the strong tier is asked directly, not after two cheap calls
                policy.answer, answer_info = None, {**answer_info, "dropped": reason}
    policy.trained_on = {**(trained_on or {}), "rows": len(data.rows), "dropped": data.dropped,
                         "positive_share": float(y.mean()), "target_quality_vs_strong": target,
                         "folds": folds, "digests": sorted({digest(r.prompt) for r in data.rows})}
    if answer_info is not None:
        policy.trained_on["answer_stage"] = answer_info
    return policy


def _cascade_does_not_pay(policy: Policy, target_q: float) -> str | None:
    """Why the prompt-only policy is the better one to serve, or None. At its threshold a cascade
    pays the cheap model and the peer on every call and the strong one on each escalation; where
    the target asks for nearly every call to escalate (the answers cannot be trusted that far), the
    prompt-only policy reaches the same quality for less by asking the strong tier first. Both
    points are out of fold on the training rows."""
    stage = policy.answer
    assert stage is not None
    cascade = next((g for g in stage.grid if g["threshold"] == stage.threshold), None)
    plain = next((g for g in policy.grid if g["threshold"] == policy.threshold), None)
    if cascade is None or plain is None:
        return None
    if plain["cost_usd"] <= cascade["cost_usd"] and plain["quality"] >= min(cascade["quality"], target_q) - 1e-12:
        return (f"at the target the cascade costs ${cascade['cost_usd']:.6g} a call (quality {cascade['quality']:.4f}), "
                f"the prompt-only policy ${plain['cost_usd']:.6g} (quality {plain['quality']:.4f}), out of fold")
    return None


# --- evaluation: the policy's curve on rows it was not trained on ---------------------------------------

def policy_probabilities(policy: Policy, features: Sequence[RequestFeatures],
                         embeddings: np.ndarray | None = None) -> np.ndarray:
    """P(cheap is as good) per row, from the embedding model when embeddings are given."""
    X = np.array([cheap_vector(f) for f in features])
    if embeddings is not None and policy.embedding is not None:
        return policy.embedding.probabilities(np.hstack([X, embeddings]))
    return policy.cheap.probabilities(X)


def sweep(p: np.ndarray, scores: tuple[np.ndarray, np.ndarray],
          costs: tuple[np.ndarray, np.ndarray]) -> list[tuple[float, float, float]]:
    """Every operating point of a threshold: (strong share, mean cost, mean quality), from all-cheap
    to all-strong, the least likely rows moved to the strong tier first; tied probabilities move
    together (a threshold cannot split them)."""
    (sw, ss), (cw, cs) = scores, costs
    n = len(p)
    order = np.argsort(p, kind="stable")
    cost, quality = float(cw.sum()), float(sw.sum())
    out = [(0.0, cost / n, quality / n)]
    for k, i in enumerate(order, 1):
        cost += cs[i] - cw[i]
        quality += ss[i] - sw[i]
        if k == n or p[order[k]] != p[i]:
            out.append((k / n, cost / n, quality / n))
    return out


def curve_metrics(points: Sequence[tuple[float, float, float]], scores: tuple[np.ndarray, np.ndarray],
                  costs: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """APGR, CPT(50%) and CPT(80%) of one curve, counted by cost and by share of calls.

    By cost: the x axis is the normalised cost u = (cost - cheap) / (strong - cheap) (CPT's `u`,
    and `cost_pct_of_strong` for the money). By share of calls: the x axis is the share of calls
    sent to the strong model, the convention of RouteLLM and the published routers. The two agree
    when both models cost the same on every call."""
    from thrifty.routing.metrics import Anchors, Point, apgr, cpt

    wq, sq = float(scores[0].mean()), float(scores[1].mean())
    wc, sc = float(costs[0].mean()), float(costs[1].mean())
    by_cost = Anchors(wc, wq, sc, sq)
    by_calls = Anchors(0.0, wq, 1.0, sq)
    cost_pts = [Point(c, q) for _, c, q in points]
    call_pts = [Point(s, q) for s, _, q in points]

    def calls(c: dict[str, float] | None) -> dict[str, float] | None:
        return None if c is None else {"share_of_calls": c["u"]}

    return {
        "by_cost": {"apgr": apgr(cost_pts, by_cost), "cpt50": cpt(cost_pts, by_cost, 0.5),
                    "cpt80": cpt(cost_pts, by_cost, 0.8), "tradeoff": by_cost.has_tradeoff},
        "by_calls": {"apgr": apgr(call_pts, by_calls), "cpt50": calls(cpt(call_pts, by_calls, 0.5)),
                     "cpt80": calls(cpt(call_pts, by_calls, 0.8)), "tradeoff": by_calls.has_tradeoff},
    }


def evaluate_policy(policy: Policy, rows: Sequence[Any], features: Sequence[RequestFeatures],
                    costs: Sequence[dict[str, float]], *, embeddings: np.ndarray | None = None,
                    threshold: float | None = None, cascade: bool | None = None) -> dict[str, Any]:
    """The policy on `rows` (none of them trained on; the caller drops those): its curve's APGR and
    CPTs both ways, the operating point at its threshold, and the same per cohort.

    A cascade (a policy with an answer stage; `cascade` defaults to whether it has one and every
    row recorded the answers it reads) is replayed on the recorded answers: every call pays the
    cheap model and the peer, an escalated one the strong model too; by share of calls, x is the
    share of calls that reached the strong model. Without the answers (cascade=None) the prompt
    models are scored; cascade=True makes that an error."""
    weak, strong = policy.cheap_model, policy.strong_model
    for r in rows:
        if weak not in r.outcomes or strong not in r.outcomes:
            raise ThriftyError(f"a row has no outcome for the policy's models ({weak}, {strong})")
    stage = policy.answer
    peer = stage.peer_model if stage is not None else None
    answered = stage is not None and all(
        r.outcomes[weak].answer is not None
        and (peer is None or (peer in r.outcomes and r.outcomes[peer].answer is not None)) for r in rows)
    if cascade and not answered:
        raise ThriftyError("the policy's answer stage needs every row's recorded answer of "
                           f"{weak}" + (f" and {peer}" if peer else "") if stage is not None
                           else "the policy has no answer stage (train it on rows with recorded answers)")
    use_cascade = answered if cascade is None else bool(cascade)
    scores = (np.array([r.outcomes[weak].score for r in rows]), np.array([r.outcomes[strong].score for r in rows]))
    cost = (np.array([c[weak] for c in costs]), np.array([c[strong] for c in costs]))
    use_embedding = False
    if use_cascade:
        assert stage is not None
        X = np.array([stage.vector(f, r.outcomes[weak].answer or "", r.outcomes[peer].answer if peer else None,
                                   r.outcomes[weak].finish_reason) for r, f in zip(rows, features)])
        p = stage.model.probabilities(X)
        extra = np.array([c[peer] for c in costs]) if peer else np.zeros(len(rows))
        paid = (cost[0] + extra, cost[0] + extra + cost[1])
        if threshold is None:
            threshold = stage.threshold
        kind = "cascade"
    else:
        p = policy_probabilities(policy, features, embeddings)
        use_embedding = embeddings is not None and policy.embedding is not None
        paid = cost
        if threshold is None:
            threshold = policy.embedding_threshold if use_embedding and policy.embedding_threshold is not None \
                else policy.threshold
        kind = "embedding" if use_embedding else "cheap"

    def summary(idx: np.ndarray) -> dict[str, Any]:
        s, c, pi = (scores[0][idx], scores[1][idx]), (cost[0][idx], cost[1][idx]), p[idx]
        pc = (paid[0][idx], paid[1][idx])
        to_strong = pi < threshold
        q = float(np.where(to_strong, s[1], s[0]).mean())
        spent = float(np.where(to_strong, pc[1], pc[0]).mean())
        sq, sc = float(s[1].mean()), float(c[1].mean())
        return {"n": int(len(idx)), "cheap_quality": float(s[0].mean()), "strong_quality": sq,
                "at_threshold": {"strong_share": float(to_strong.mean()), "quality": q, "cost_usd": spent,
                                 "quality_vs_strong": q / sq if sq else None,
                                 "cost_vs_strong": spent / sc if sc else None},
                **curve_metrics(sweep(pi, s, pc), s, c)}

    everything = np.arange(len(rows))
    out = {"model": kind, "threshold": threshold,
           "cheap_model": weak, "strong_model": strong, "tiers": {"cheap": policy.cheap_tier,
                                                                 "strong": policy.strong_tier},
           **summary(everything)}
    if use_cascade:
        out["peer_model"] = peer
    cohorts: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        cohorts.setdefault(r.cohort or "(none)", []).append(i)
    out["cohorts"] = {name: summary(np.array(idx)) for name, idx in sorted(cohorts.items())}
    return out
