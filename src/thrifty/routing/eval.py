"""Replay labelled routing outcomes through the gateway's own router, and two baselines.

Rows are JSON Lines `{"prompt": str, "outcomes": {"<model>": {"score": float, "cost_usd": float|null}},
"cohort": str|null}`; an outcome may also carry the recorded `answer` (and `finish_reason`), which
lets the escalation checks run as they would in the gateway (the cascade).

Each prompt becomes the request a client would send (`features_from_prompt`), the `Router` built
from the config decides, and the chosen deployment's recorded outcome is what that request would
have scored and cost. With a cascade, the decision's checks run on the recorded answer (a
consistency check takes its second sample from the tier's peer deployment, whose cost is paid
too) and a failed check escalates through `Router.escalate`, paying for both calls. A rule whose
learned policy has an answer stage (routing/learned.py) is replayed the same way: the stage scores
the recorded cheap answer with the peer's recorded answer, as the gateway does.

Baselines on the same rows: the random router (a share p of requests to the strong model, the
rest to the weak one; its expected curve) and the length router (prompts longer than a
threshold go to the strong model, thresholds at every decile of prompt length).

`calibrate` fits rules on training rows (a family over a cost weight, the cost-quality curve)
and picks the cheapest that reaches a target share of the strong model's training quality; the
fitted rules are plain `RoutingConfig` rules over request features, reported on the test rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from pydantic import ValidationError

from thrifty.errors import ConfigError, ThriftyError
from thrifty.routing.checks import AnswerView, CheckSettings, first_failure
from thrifty.routing.features import RequestFeatures, features_from_prompt
from thrifty.routing.metrics import Anchors, Point, apgr, beats, cpt, quality_at
from thrifty.routing.router import Decision, Router
from thrifty.routing.rules import Range, Rule, RoutingConfig, When

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Outcome:
    score: float
    cost: float | None
    answer: str | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class Row:
    prompt: str
    outcomes: dict[str, Outcome]
    cohort: str | None = None
    id: str | None = None


def read_rows(path: str) -> list[Row]:
    """Rows of a routing-outcomes file; a ThriftyError names the line of the first bad one."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ThriftyError(f"cannot read data file {path}: {exc.strerror or exc}") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            rows.append(_row(line, f"{path}:{number}"))
    if not rows:
        raise ThriftyError(f"{path}: no rows")
    return rows


def _row(line: str, where: str) -> Row:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ThriftyError(f"{where}: not JSON: {exc.msg}") from exc
    shape = ('expected {"prompt": str, "outcomes": {model: {"score": float, "cost_usd": float|null}}, '
             '"cohort": str|null}')
    if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str) or not isinstance(raw.get("outcomes"), dict):
        raise ThriftyError(f"{where}: {shape}")
    cohort = raw.get("cohort")
    if cohort is not None and not isinstance(cohort, str):
        raise ThriftyError(f"{where}: cohort must be a string or null")
    outcomes = {}
    for model, o in raw["outcomes"].items():
        if not isinstance(o, dict) or not _number(o.get("score")):
            raise ThriftyError(f"{where}: outcomes.{model}.score must be a number")
        cost = o.get("cost_usd")
        if cost is not None and (not _number(cost) or cost < 0):
            raise ThriftyError(f"{where}: outcomes.{model}.cost_usd must be a non-negative number or null")
        answer = o.get("answer")
        outcomes[model] = Outcome(float(o["score"]), None if cost is None else float(cost),
                                  answer if isinstance(answer, str) else None,
                                  o.get("finish_reason") if isinstance(o.get("finish_reason"), str) else None)
    if not outcomes:
        raise ThriftyError(f"{where}: no outcomes")
    rid = raw.get("id")
    return Row(raw["prompt"], outcomes, cohort, str(rid) if rid is not None else None)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --- the setup: routing config, deployments, prices -------------------------------------------

@dataclass(slots=True)
class Setup:
    routing: RoutingConfig
    models: dict[str, str]  # deployment -> the model name outcomes are keyed by
    deployments: dict[str, Any] | None  # as the gateway's config has them (for the router's price ranking)
    prices: Any  # PriceBook
    path: str


@dataclass(frozen=True, slots=True)
class _Dep:
    model: str
    price_provider: str | None = None


def load_setup(path: str) -> Setup:
    """A gateway config with a `routing:` section (deployments and prices taken from it too), or a
    file that is a routing section by itself (then deployment names are the outcomes' model names)."""
    from thrifty.pricing import PriceBook

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "the top level must be a mapping")
    section, prefix = (data.get("routing"), "routing") if "routing" in data else (data, "")
    routing = parse_routing(section, path, prefix)
    deployments: dict[str, Any] | None = None
    raw_deps = data.get("deployments") if "routing" in data else None
    if isinstance(raw_deps, dict):
        deployments = {}
        for name, d in raw_deps.items():
            if not isinstance(d, dict) or not isinstance(d.get("model"), str):
                raise ConfigError(path, f"deployments.{name}.model", "a model name is required")
            deployments[name] = _Dep(d["model"], d.get("price_provider"))
    models: dict[str, str] = {}  # only the deployments routing can serve
    for tier, deps in routing.tiers.items():
        for name in deps:
            if deployments is not None and name not in deployments:
                raise ConfigError(path, f"{prefix}.tiers.{tier}", f"unknown deployment {name!r}")
            models[name] = deployments[name].model if deployments is not None else name
    try:
        prices = PriceBook(data.get("prices") or {})
    except ConfigError as exc:
        raise ConfigError(path, f"prices.{exc.key}", exc.problem) from None
    return Setup(routing, models, deployments, prices, path)


def parse_routing(section: Any, path: str = "<config>", prefix: str = "routing") -> RoutingConfig:
    if not isinstance(section, dict):
        raise ConfigError(path, prefix, "must be a mapping")
    try:
        return RoutingConfig.model_validate(section)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = err["msg"].removeprefix("Value error, ")
        if ": " in msg and not err["loc"]:
            sub, msg = msg.split(": ", 1)
            key = f"{prefix}.{sub}" if prefix else sub
        raise ConfigError(path, key, msg) from None


# --- replay -----------------------------------------------------------------------------------

@dataclass(slots=True)
class Served:
    """What one method did on one row."""

    score: float
    cost: float
    tier: str | None
    escalated: bool = False


@dataclass(slots=True)
class Data:
    """Rows with everything the methods need, computed once."""

    rows: list[Row]
    features: list[RequestFeatures]
    costs: list[dict[str, float]]  # per row: model -> cost (estimated where the file had null)
    models: list[str]  # models every kept row has an outcome for
    dropped: int = 0
    estimated_costs: int = 0
    has_answers: bool = False


def prepare(rows: Sequence[Row], setup: Setup, *, output_tokens: int = 256,
            models: Sequence[str] | None = None) -> Data:
    """Keep rows with an outcome for every model the config routes to (or every one of `models`,
    when given: a policy choosing between two needs only those two); fill unknown costs."""
    needed = sorted(set(models) if models else set(setup.models.values()))
    kept = [r for r in rows if all(m in r.outcomes for m in needed)]
    if not kept:
        what = "of " + ", ".join(needed) if models else "for every model the config routes to"
        raise ThriftyError(f"no row has an outcome {what} ({', '.join(needed)}); "
                           "check the deployment and model names")
    settings = setup.routing.features.settings()
    features = [features_from_prompt(r.prompt, settings=settings) for r in kept]
    data = Data(kept, features, [], sorted(set.intersection(*(set(r.outcomes) for r in kept))),
                dropped=len(rows) - len(kept))
    for r, f in zip(kept, features):
        costs = {}
        for model, o in r.outcomes.items():
            if o.cost is None:
                costs[model] = _estimate(setup.prices, model, f.input_tokens, output_tokens)
                data.estimated_costs += 1
            else:
                costs[model] = o.cost
            if o.answer is not None:
                data.has_answers = True
        data.costs.append(costs)
    return data


def _estimate(prices: Any, model: str, input_tokens: int, output_tokens: int) -> float:
    card = prices.card(model) if prices is not None else None
    if card is None:
        return 0.0
    return float(card.input * input_tokens + card.output * output_tokens) / 1e6


def build_router(routing: RoutingConfig, setup: Setup) -> Router:
    return Router(routing, deployments=setup.deployments, prices=setup.prices, config_path=setup.path)


def replay(data: Data, setup: Setup, routing: RoutingConfig | None = None, *, cascade: bool = True) -> list[Served]:
    """Every row through the router (and the cascade, where recorded answers allow the checks)."""
    routing = routing or setup.routing
    router = build_router(routing, setup)
    settings = CheckSettings.from_config(routing.escalation)
    model = setup.models.get
    request = routing.model_prefix + routing.auto_name
    out = []
    for row, feats, costs in zip(data.rows, data.features, data.costs):
        decision: Decision | None = router.decide(feats, request)
        served = model(decision.deployment, decision.deployment)
        cost = costs[served]
        escalated = False
        while cascade and decision.checks:
            o = row.outcomes[served]
            if o.answer is None:
                break
            second = None
            stage = decision.answer_stage
            # A second sample as the gateway takes one: for the consistency check, or for an answer
            # stage that compares two answers (which then replaces the consistency check).
            sampled = stage.needs_second if stage is not None else "consistency" in decision.checks
            if sampled and routing.escalation.consistency.sample_from == "peer":
                peer = router.peer(decision)
                if peer is not None:
                    peer_model = model(peer, peer)
                    second = row.outcomes[peer_model].answer
                    cost += costs[peer_model]
            view = AnswerView(o.answer, o.finish_reason)
            checks = tuple(c for c in decision.checks if c not in ("consistency", "policy")) \
                if stage is not None else decision.checks
            reason = first_failure(view, checks, settings, second=second, choices=feats.choices)
            if reason is None and stage is not None and (second is not None or not stage.needs_second):
                # A learned cascade's answer stage, as routing/escalation.py scores it in the gateway.
                score = stage.score(feats, o.answer, second, o.finish_reason)
                if score < decision.answer_threshold:
                    reason = f"policy: answer score {score:.2f} < {decision.answer_threshold:.2f}"
            if reason is None:
                break
            up = router.escalate(decision, feats, reason)
            if up is None:
                break
            decision, served, escalated = up, model(up.deployment, up.deployment), True
            cost += costs[served]
        out.append(Served(row.outcomes[served].score, cost, decision.tier, escalated))
    return out


def fixed(data: Data, model: str) -> list[Served]:
    return [Served(r.outcomes[model].score, c[model], None) for r, c in zip(data.rows, data.costs)]


# --- summaries ----------------------------------------------------------------------------------

def mean_point(served: Sequence[Served], idx: Sequence[int] | None = None, label: str = "") -> Point:
    items = served if idx is None else [served[i] for i in idx]
    n = len(items) or 1
    return Point(sum(s.cost for s in items) / n, sum(s.score for s in items) / n, label)


def model_points(data: Data, models: Iterable[str], idx: Sequence[int] | None = None) -> dict[str, Point]:
    rows = range(len(data.rows)) if idx is None else idx
    n = len(rows) or 1
    return {m: Point(sum(data.costs[i][m] for i in rows) / n,
                     sum(data.rows[i].outcomes[m].score for i in rows) / n, m) for m in models}


def pick_anchors(data: Data, setup: Setup, strong: str | None, weak: str | None) -> tuple[str, str]:
    """Strong: the best-scoring routed model. Weak: the cheapest model of the weakest tier (when
    that is the strong one too, the cheapest other routed model)."""
    routed = sorted(set(setup.models.values()))
    pts = model_points(data, routed)
    for name, value in (("--strong", strong), ("--weak", weak)):
        if value is not None and value not in data.models:
            raise ThriftyError(f"{name} {value!r} has no outcome in every row (models: {', '.join(data.models)})")
    if strong is None:
        strong = max(routed, key=lambda m: (pts[m].quality, -pts[m].cost))
    if weak is None:
        weakest = [setup.models[d] for d in setup.routing.tiers[setup.routing.order()[0]]]
        weak = min(weakest, key=lambda m: pts[m].cost)
        if weak == strong:
            others = [m for m in routed if m != strong]
            if others:
                weak = min(others, key=lambda m: pts[m].cost)
    return strong, weak


def random_curve(weak: Point, strong: Point, steps: int = 10) -> list[Point]:
    """The random router's expected points: share p of requests to the strong model."""
    inner = [Point(weak.cost + p * (strong.cost - weak.cost), weak.quality + p * (strong.quality - weak.quality),
                   f"p={p:.1f}") for p in (i / steps for i in range(1, steps))]
    return [replace(weak, label="p=0.0"), *inner, replace(strong, label="p=1.0")]


def length_thresholds(data: Data, deciles: int = 10) -> list[int]:
    lengths = sorted(len(r.prompt) for r in data.rows)
    cuts = {lengths[min(len(lengths) - 1, (len(lengths) * k) // deciles)] for k in range(deciles)}
    return sorted(cuts | {-1, lengths[-1]})


def length_curve(data: Data, weak: str, strong: str, thresholds: Sequence[int],
                 idx: Sequence[int] | None = None) -> list[Point]:
    """Prompts longer than each threshold go to the strong model."""
    rows = list(range(len(data.rows))) if idx is None else list(idx)
    n = len(rows) or 1
    out = []
    for t in thresholds:
        cost = quality = 0.0
        for i in rows:
            m = strong if len(data.rows[i].prompt) > t else weak
            cost += data.costs[i][m]
            quality += data.rows[i].outcomes[m].score
        out.append(Point(cost / n, quality / n, f"len>{t}"))
    return out


@dataclass(slots=True)
class Context:
    """What every method's summary is measured against."""

    data: Data
    strong: str
    weak: str
    anchors: Anchors
    random: list[Point]
    length: list[Point]
    thresholds: list[int]
    cohorts: dict[str, list[int]] = field(default_factory=dict)


def context(data: Data, setup: Setup, strong: str | None = None, weak: str | None = None) -> Context:
    strong, weak = pick_anchors(data, setup, strong, weak)
    pts = model_points(data, [strong, weak])
    anchors = Anchors(pts[weak].cost, pts[weak].quality, pts[strong].cost, pts[strong].quality)
    thresholds = length_thresholds(data)
    cohorts: dict[str, list[int]] = {}
    for i, r in enumerate(data.rows):
        cohorts.setdefault(r.cohort or "(none)", []).append(i)
    return Context(data, strong, weak, anchors, random_curve(pts[weak], pts[strong]),
                   length_curve(data, weak, strong, thresholds), thresholds, cohorts)


def summarise_curve(points: Sequence[Point], ctx: Context) -> dict[str, Any]:
    a = ctx.anchors
    return {"apgr": apgr(points, a), "cpt50": cpt(points, a, 0.5), "cpt80": cpt(points, a, 0.8),
            "curve": [_point_json(p, a) for p in sorted(points, key=lambda p: p.cost)]}


def summarise_point(served: Sequence[Served], ctx: Context, curve: Sequence[Point] | None = None) -> dict[str, Any]:
    """A method's operating point: quality and cost against the strong model, tiers, cohorts, baselines."""
    a = ctx.anchors
    point = mean_point(served)
    out: dict[str, Any] = _point_json(point, a)
    tiers: dict[str, int] = {}
    for s in served:
        tiers[s.tier or "(model)"] = tiers.get(s.tier or "(model)", 0) + 1
    out["tier_share"] = {t: n / len(served) for t, n in sorted(tiers.items())}
    out["escalation_rate"] = sum(s.escalated for s in served) / len(served)
    out.update(summarise_curve(list(curve) if curve is not None else [point], ctx))
    out["beats"] = {"random": beats(point, ctx.random), "longer_prompt": beats(point, ctx.length)}
    out["baseline_quality_at_same_cost"] = {"random": quality_at(ctx.random, point.cost),
                                            "longer_prompt": quality_at(ctx.length, point.cost)}
    out["cohorts"] = {name: _cohort(served, ctx, idx) for name, idx in sorted(ctx.cohorts.items())}
    return out


def _cohort(served: Sequence[Served], ctx: Context, idx: list[int]) -> dict[str, Any]:
    point = mean_point(served, idx)
    pts = model_points(ctx.data, [ctx.strong, ctx.weak], idx)
    strong, weak = pts[ctx.strong], pts[ctx.weak]
    rand = random_curve(weak, strong)
    length = length_curve(ctx.data, ctx.weak, ctx.strong, ctx.thresholds, idx)
    return {"n": len(idx), "quality": point.quality, "strong_quality": strong.quality, "weak_quality": weak.quality,
            "quality_vs_strong": _ratio(point.quality, strong.quality),
            "cost_vs_strong": _ratio(point.cost, strong.cost),
            "random_quality_at_same_cost": quality_at(rand, point.cost),
            "longer_prompt_quality_at_same_cost": quality_at(length, point.cost),
            "beats_random": beats(point, rand), "beats_longer_prompt": beats(point, length)}


def _point_json(p: Point, a: Anchors) -> dict[str, Any]:
    out: dict[str, Any] = {"quality": p.quality, "cost_usd": p.cost,
                           "quality_vs_strong": _ratio(p.quality, a.strong_quality),
                           "cost_vs_strong": _ratio(p.cost, a.strong_cost)}
    if p.label:
        out["label"] = p.label
    return out


def _ratio(x: float, y: float) -> float | None:
    return x / y if y else None


def oracle(data: Data, models: Sequence[str]) -> list[Served]:
    """Per row, the cheapest model with the best score (an upper bound for any router)."""
    out = []
    for r, c in zip(data.rows, data.costs):
        best = max(r.outcomes[m].score for m in models)
        m = min((m for m in models if r.outcomes[m].score == best), key=lambda m: c[m])
        out.append(Served(best, c[m], None))
    return out


# --- the report -----------------------------------------------------------------------------------

def evaluate(test_rows: Sequence[Row], setup: Setup, *, train_rows: Sequence[Row] | None = None,
             strong: str | None = None, weak: str | None = None, cascade: bool = True,
             target: float = 0.95, output_tokens: int = 256, calibrate_options: Mapping[str, Any] | None = None,
             ) -> dict[str, Any]:
    data = prepare(test_rows, setup, output_tokens=output_tokens)
    ctx = context(data, setup, strong, weak)
    routed = sorted(set(setup.models.values()))
    report: dict[str, Any] = {
        "data": {"rows": len(data.rows), "dropped": data.dropped, "estimated_costs": data.estimated_costs,
                 "recorded_answers": data.has_answers,
                 "cohorts": {k: len(v) for k, v in sorted(ctx.cohorts.items())}},
        "config": setup.path, "strong": ctx.strong, "weak": ctx.weak,
        "models": {m: _point_json(p, ctx.anchors) for m, p in model_points(data, routed).items()},
    }
    methods: dict[str, Any] = {}
    rules_only = replay(data, setup, cascade=False)
    methods["rules"] = summarise_point(rules_only, ctx)
    if cascade and data.has_answers and setup.routing.escalation.enabled:
        methods["rules+cascade"] = summarise_point(replay(data, setup, cascade=True), ctx)
    if train_rows is not None:
        train = prepare(train_rows, setup, output_tokens=output_tokens)
        fit = calibrate(train, setup, ctx.strong, target=target, cascade=cascade and train.has_answers,
                        **dict(calibrate_options or {}))
        curve = []
        chosen_served: list[Served] | None = None
        for member in fit.family:
            served = replay(data, setup, member.routing, cascade=True)
            curve.append(replace(mean_point(served), label=f"lambda={member.lam:g}"))
            if member is fit.chosen:
                chosen_served = served
        assert chosen_served is not None
        summary = summarise_point(chosen_served, ctx, curve)
        summary["train"] = fit.train_summary
        summary["lambda"] = fit.chosen.lam
        summary["rules_fitted"] = len(fit.chosen.routing.rules)
        methods["calibrated"] = summary
        report["calibrated_routing"] = fit.chosen.routing.model_dump(mode="json", exclude_defaults=True)
    methods["random"] = summarise_curve(ctx.random, ctx)
    methods["longer_prompt"] = summarise_curve(ctx.length, ctx)
    orc = mean_point(oracle(data, routed))
    methods["oracle"] = _point_json(orc, ctx.anchors)
    report["methods"] = methods
    report["anchors"] = {"weak_cost_usd": ctx.anchors.weak_cost, "weak_quality": ctx.anchors.weak_quality,
                         "strong_cost_usd": ctx.anchors.strong_cost, "strong_quality": ctx.anchors.strong_quality,
                         "tradeoff": ctx.anchors.has_tradeoff}
    return report


# --- calibration: rules fitted on training rows -------------------------------------------------

@dataclass(frozen=True, slots=True)
class Action:
    """What a rule does: a tier, and optionally checks that escalate its answers to a higher tier."""

    tier: str
    checks: tuple[str, ...] = ()
    escalate_to: str | None = None

    def rule(self, name: str, when: When) -> Rule:
        return Rule(name=name, when=when, tier=self.tier, checks=list(self.checks), escalate_to=self.escalate_to)


@dataclass(slots=True)
class Member:
    lam: float
    routing: RoutingConfig
    train: Point


@dataclass(slots=True)
class Fit:
    family: list[Member]  # cheapest first
    chosen: Member
    train_summary: dict[str, Any]


def calibrate(train: Data, setup: Setup, strong: str, *, target: float = 0.95, cascade: bool = True,
              min_support: int = 20, token_bins: int = 3, lambdas: Sequence[float] | None = None) -> Fit:
    """Fit a family of rule sets on `train`, one per cost weight lambda, and choose the cheapest
    whose training quality reaches `target` x the strong model's.

    Requests are grouped by request type, number of options and an input-token band (quantiles of
    `train`); a group smaller than `min_support` falls back to its request type, then to a
    catch-all. Each group gets the action (tier, or tier with escalation checks) maximising
    mean score - lambda x mean cost / strong model's mean cost. Every rule only reads request
    features, so the fitted rules run unchanged in the gateway.
    """
    base = setup.routing
    actions = _actions(base, cascade)
    outcomes = {a: replay(train, setup, _single(base, a), cascade=True) for a in actions}
    edges = _token_edges(train, token_bins)
    scale = model_points(train, [strong])[strong].cost or 1.0
    grid = list(lambdas) if lambdas is not None else [0.0] + [10 ** (k / 4) for k in range(-12, 13)] + [math.inf]
    family: list[Member] = []
    seen: set[str] = set()
    for lam in grid:
        rules = _fit_rules(train, actions, outcomes, edges, lam, scale, min_support)
        routing = RoutingConfig.model_validate({**base.model_dump(), "rules": [r.model_dump() for r in rules]})
        key = json.dumps([r.model_dump(mode="json") for r in rules], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        family.append(Member(lam, routing, mean_point(replay(train, setup, routing, cascade=True))))
    family.sort(key=lambda m: (m.train.cost, -m.train.quality))
    strong_q = model_points(train, [strong])[strong].quality
    good = [m for m in family if m.train.quality >= target * strong_q]
    chosen = good[0] if good else max(family, key=lambda m: (m.train.quality, -m.train.cost))
    summary = {"rows": len(train.rows), "target_quality_vs_strong": target, "strong_quality": strong_q,
               "strong_cost_usd": scale, "members": len(family), "reached_target": bool(good),
               "chosen": {"quality": chosen.train.quality, "cost_usd": chosen.train.cost,
                          "quality_vs_strong": _ratio(chosen.train.quality, strong_q),
                          "cost_vs_strong": _ratio(chosen.train.cost, scale)}}
    return Fit(family, chosen, summary)


def _actions(base: RoutingConfig, cascade: bool) -> list[Action]:
    order = base.order()
    out = [Action(t) for t in order]
    if not cascade or not base.escalation.enabled or base.escalation.max_steps < 1:
        return out
    checks = tuple(base.escalation.checks)
    for i, tier in enumerate(order[:-1]):
        own = checks + (("consistency",) if len(base.tiers[tier]) > 1 and "consistency" not in checks else ())
        for up in order[i + 1:]:
            out.append(Action(tier, own, up))
    return out


def _single(base: RoutingConfig, action: Action) -> RoutingConfig:
    rule = action.rule("all", When())
    return RoutingConfig.model_validate({**base.model_dump(), "rules": [rule.model_dump()]})


def _token_edges(train: Data, bins: int) -> list[int]:
    tokens = sorted(f.input_tokens for f in train.features)
    edges = set()
    for k in range(1, bins):
        raw = tokens[(len(tokens) * k) // bins]
        digits = max(len(str(raw)) - 2, 0)
        edges.add(round(raw, -digits) if raw >= 100 else raw)
    return sorted(e for e in edges if e > tokens[0])


def _choice_bin(n: int) -> int:
    return min(n, 5)


def _band(tokens: int, edges: Sequence[int]) -> int:
    band = 0
    while band < len(edges) and tokens >= edges[band]:
        band += 1
    return band


def _fine_when(rtype: str, choice_bin: int, band: int, edges: Sequence[int]) -> When:
    tokens: Range | None = None
    if edges:
        lo = edges[band - 1] if band > 0 else None
        hi = edges[band] if band < len(edges) else None
        tokens = Range(ge=lo, lt=hi) if lo is not None or hi is not None else None
    choices: int | Range = Range(ge=5) if choice_bin == 5 else choice_bin
    return When(request_type=rtype, choices=choices, input_tokens=tokens)


def _fit_rules(train: Data, actions: Sequence[Action], outcomes: Mapping[Action, list[Served]],
               edges: Sequence[int], lam: float, scale: float, min_support: int) -> list[Rule]:
    def best(idx: Sequence[int]) -> Action:
        def value(a: Action) -> tuple[float, float]:
            served = outcomes[a]
            cost = sum(served[i].cost for i in idx) / scale
            score = sum(served[i].score for i in idx)
            return (-cost, score) if math.isinf(lam) else (score - lam * cost, -cost)

        return max(actions, key=value)

    fine: dict[tuple[str, int, int], list[int]] = {}
    for i, f in enumerate(train.features):
        fine.setdefault((f.request_type, _choice_bin(f.choices), _band(f.input_tokens, edges)), []).append(i)
    by_type: dict[str, list[tuple[tuple[str, int, int], list[int]]]] = {}
    for key, idx in fine.items():
        by_type.setdefault(key[0], []).append((key, idx))
    rest: list[int] = []
    typed: list[tuple[str, list[tuple[When, Action]], list[int]]] = []
    for rtype, groups in sorted(by_type.items(), key=lambda kv: -sum(len(i) for _, i in kv[1])):
        rules = []
        residual: list[int] = []
        for key, idx in sorted(groups):
            if len(idx) >= min_support:
                rules.append((_fine_when(*key, edges), best(idx)))
            else:
                residual.extend(idx)
        typed.append((rtype, rules, residual))
    coarse: dict[str, Action] = {}
    for rtype, _, residual in typed:
        if len(residual) >= min_support:
            coarse[rtype] = best(residual)
        else:
            rest.extend(residual)
    fallback = best(rest) if rest else best(range(len(train.rows)))
    out: list[Rule] = []
    for rtype, rules, residual in typed:
        actions = {a for _, a in rules}
        if len(actions) == 1 and coarse.get(rtype, next(iter(actions))) in actions:
            # Every band of this type agrees: one rule for the type reads better and overfits less
            # (the few rows of small bands follow their type instead of the catch-all).
            rules, coarse[rtype] = [], next(iter(actions))
        otherwise = coarse.get(rtype, fallback)
        for when, action in rules:
            if action != otherwise:
                name = f"{rtype}/choices={when.choices}/tokens={_describe(when.input_tokens)}"
                out.append(action.rule(name, when))
        if rtype in coarse and coarse[rtype] != fallback:
            out.append(coarse[rtype].rule(rtype, When(request_type=rtype)))
    out.append(fallback.rule("everything else", When()))
    return out


def _describe(r: Range | int | None) -> str:
    if not isinstance(r, Range):
        return "any"
    lo = "" if r.ge is None else f"{r.ge:g}"
    hi = "" if r.lt is None else f"{r.lt:g}"
    return f"[{lo},{hi})"
