"""When a self-hosted tier beats the API at this volume: the arithmetic, every assumption stated.

Per tier (the traffic's routing tier, else its model), the source's tokens are extrapolated to a
month from the span of its timestamps; GPU hours follow from stated throughputs of an open model
of the tier's size served with continuous batching (vLLM / SGLang) at a stated utilisation; the
self-hosted month costs those hours (never fewer than one always-on replica) at a GPU price, plus
the engineering and operations a self-hosted tier needs. Break-even is the monthly volume at which
that equals the API bill at the tier's observed price per token.

None of the throughput or price figures is measured here: they are defaults a user is expected to
replace with their own (`--assumptions FILE.yaml` or flags), and every one is printed with its
value. The seeds' rule of thumb, which the output quotes next to the computed break-even:
"Usually no, until volume crosses ~50-200M tokens per month" (seeds/001, FAQ "Should I self-host
to save money?"); continuous batching lifts utilisation "from ~15-30% (naive serving) to
~60-80%" (seeds/001, "Continuous batching"); FP8 is "effectively lossless" and only exists
for self-hosted inference on supported hardware (seeds/000, "Lever 5: FP8 Quantization").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

from thrifty.analysis.schema import TABLE

SECONDS_PER_MONTH = 30.4375 * 86400  # an average month


@dataclass(frozen=True)
class Throughput:
    """One open model size on one GPU with continuous batching (tokens per second per GPU)."""

    prefill_tps: float  # input tokens processed per second per GPU
    decode_tps: float  # output tokens generated per second per GPU, summed over concurrent requests
    gpus_per_replica: int  # GPUs one serving replica needs (weights + KV cache)


@dataclass(frozen=True)
class Assumptions:
    gpu: str = "H100 80GB"
    gpu_usd_per_hour: float = 2.50  # on-demand cloud price of one GPU
    fp8: bool = True  # the GPU runs FP8 (Hopper, Ada, MI300 do; A100 does not)
    bf16_factor: float = 0.6  # throughput without FP8, as a share of the FP8 figures
    utilisation: float = 0.6  # continuous batching's busy share of paid GPU time (seeds/001: 60-80%)
    ops_usd_per_month: float = 8000.0  # engineering and on-call a self-hosted tier needs
    hours_per_month: float = SECONDS_PER_MONTH / 3600
    # FP8 throughputs per model size (billions of parameters), vLLM/SGLang with continuous batching.
    sizes: dict[int, Throughput] = field(default_factory=lambda: {
        8: Throughput(prefill_tps=20_000, decode_tps=2_500, gpus_per_replica=1),
        70: Throughput(prefill_tps=2_500, decode_tps=350, gpus_per_replica=2),
    })
    # tier (or model) -> model size; a tier not named here takes 8B when its API price is below
    # `small_below_usd_per_mtok` (a small-model tier: mini, haiku, flash), else 70B.
    tier_sizes: dict[str, int] = field(default_factory=dict)
    small_below_usd_per_mtok: float = 1.0
    seed_threshold_tokens: tuple[int, int] = (50_000_000, 200_000_000)  # seeds/001 FAQ

    def with_overrides(self, data: dict[str, Any]) -> "Assumptions":
        """A copy with the keys of an --assumptions YAML (or flags) replaced; unknown keys are errors."""
        known = {f for f in asdict(self)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown assumption(s): {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        out = dict(data)
        if "sizes" in out:
            sizes = dict(self.sizes)
            for size, tp in (out["sizes"] or {}).items():
                base = asdict(sizes.get(int(size), Throughput(1, 1, 1)))
                sizes[int(size)] = Throughput(**{**base, **tp})
            out["sizes"] = sizes
        if "tier_sizes" in out:
            out["tier_sizes"] = {**self.tier_sizes, **{str(k): int(v) for k, v in out["tier_sizes"].items()}}
        for name in ("gpu_usd_per_hour", "utilisation", "ops_usd_per_month", "bf16_factor", "hours_per_month",
                     "small_below_usd_per_mtok"):
            if name in out and not (isinstance(out[name], (int, float)) and out[name] > 0):
                raise ValueError(f"assumption {name} must be a positive number, not {out[name]!r}")
        if "utilisation" in out and out["utilisation"] > 1:
            raise ValueError("assumption utilisation is a share of time: at most 1")
        return replace(self, **out)

    def listed(self) -> list[dict[str, Any]]:
        """Every assumption with its value, as the report prints it."""
        rows: list[dict[str, Any]] = [
            {"name": "gpu", "value": self.gpu},
            {"name": "gpu_usd_per_hour", "value": self.gpu_usd_per_hour},
            {"name": "fp8", "value": self.fp8},
            {"name": "bf16_factor", "value": self.bf16_factor, "note": "throughput share without FP8"},
            {"name": "utilisation", "value": self.utilisation, "note": "seeds/001: continuous batching 60-80%"},
            {"name": "ops_usd_per_month", "value": self.ops_usd_per_month},
            {"name": "hours_per_month", "value": round(self.hours_per_month, 2)},
            {"name": "small_below_usd_per_mtok", "value": self.small_below_usd_per_mtok,
             "note": "tiers cheaper per million tokens are replaced by an 8B model, others by 70B"},
        ]
        for size, tp in sorted(self.sizes.items()):
            rows.append({"name": f"sizes.{size}", "value": asdict(tp),
                         "note": "FP8, vLLM/SGLang continuous batching, tokens/s per GPU"})
        for tier, size in sorted(self.tier_sizes.items()):
            rows.append({"name": f"tier_sizes.{tier}", "value": size})
        return rows


@dataclass
class TierAdvice:
    tier: str
    calls: int
    input_tokens_per_month: float
    output_tokens_per_month: float
    api_usd_per_month: float
    model_size_b: int
    gpu_hours_per_month: float
    gpus_always_on: int
    self_host_usd_per_month: float
    break_even_tokens_per_month: float | None  # None: self-hosting never beats this tier's price
    worth_it: bool

    @property
    def tokens_per_month(self) -> float:
        return self.input_tokens_per_month + self.output_tokens_per_month


@dataclass
class Advice:
    span_s: float
    month_factor: float
    tiers: list[TierAdvice]
    assumptions: Assumptions

    def as_json(self) -> dict[str, Any]:
        return {"span_s": self.span_s, "month_factor": self.month_factor,
                "tiers": [{**asdict(t), "tokens_per_month": t.tokens_per_month} for t in self.tiers],
                "assumptions": self.assumptions.listed(),
                "seed_threshold_tokens_per_month": list(self.assumptions.seed_threshold_tokens),
                "seed_source": "seeds/001 FAQ: self-hosting is usually not worth it below ~50-200M tokens a month"}


def advise(con: Any, assumptions: Assumptions = Assumptions(), *, tier_of: dict[str, str] | None = None) -> Advice:
    """The advice for the `traffic` table in `con`. `tier_of`: model -> tier (from a config)."""
    lo, hi = con.execute(f"SELECT min(ts), max(ts) FROM {TABLE}").fetchone()
    span = float(hi - lo) if lo is not None and hi is not None else 0.0
    if span <= 0:
        raise ValueError("the source has no time span (timestamps missing or all equal): "
                         "cannot extrapolate to a month")
    factor = SECONDS_PER_MONTH / span
    rows = con.execute(
        f"SELECT coalesce(tier, model, requested_model, '(unknown)') AS k, count(*), "
        f"coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0) "
        f"FROM {TABLE} GROUP BY k ORDER BY k").fetchall()
    groups: dict[str, list[Any]] = {}
    for key, calls, tin, tout, usd in rows:
        name = (tier_of or {}).get(key, key)
        g = groups.setdefault(name, [0, 0, 0, Decimal(0)])
        g[0] += calls
        g[1] += tin
        g[2] += tout
        g[3] += usd
    price = {k: (float(g[3]) / (g[1] + g[2]) if g[1] + g[2] else 0.0) for k, g in groups.items()}
    tiers = []
    for name, (calls, tin, tout, usd) in groups.items():
        small = price[name] * 1e6 < assumptions.small_below_usd_per_mtok
        size = assumptions.tier_sizes.get(name, 8 if small else 70)
        tiers.append(_tier(name, calls, tin * factor, tout * factor, float(usd) * factor, size, assumptions))
    tiers.sort(key=lambda t: -t.api_usd_per_month)
    return Advice(span, factor, tiers, assumptions)


def _tier(name: str, calls: int, tin: float, tout: float, api: float, size: int, a: Assumptions) -> TierAdvice:
    tp = a.sizes.get(size)
    if tp is None:
        raise ValueError(f"no throughput assumption for a {size}B model (known sizes: "
                         f"{', '.join(map(str, sorted(a.sizes)))}); add sizes.{size} to --assumptions")
    speed = 1.0 if a.fp8 else a.bf16_factor
    busy_h = (tin / (tp.prefill_tps * speed) + tout / (tp.decode_tps * speed)) / 3600
    gpu_h = busy_h / a.utilisation
    floor_h = tp.gpus_per_replica * a.hours_per_month  # one replica always on
    paid_h = max(gpu_h, floor_h)
    gpus = max(tp.gpus_per_replica, -(-int(paid_h) // int(a.hours_per_month)) if paid_h else 0)
    self_cost = paid_h * a.gpu_usd_per_hour + a.ops_usd_per_month
    volume = tin + tout
    return TierAdvice(tier=name, calls=calls, input_tokens_per_month=tin, output_tokens_per_month=tout,
                      api_usd_per_month=api, model_size_b=size, gpu_hours_per_month=gpu_h, gpus_always_on=gpus,
                      self_host_usd_per_month=self_cost,
                      break_even_tokens_per_month=_break_even(volume, api, gpu_h, floor_h, a),
                      worth_it=self_cost < api)


def _break_even(volume: float, api: float, gpu_h: float, floor_h: float, a: Assumptions) -> float | None:
    """The monthly tokens at which the API bill equals the self-hosted cost, at this tier's mix.

    API: p * V. Self-hosted: max(g * V, floor) * price + ops, with g the GPU hours per token.
    """
    if volume <= 0 or api <= 0:
        return None
    p = api / volume
    g_usd = gpu_h / volume * a.gpu_usd_per_hour
    floor_usd = floor_h * a.gpu_usd_per_hour
    if p <= g_usd:
        return None
    on_floor = (floor_usd + a.ops_usd_per_month) / p
    if g_usd * on_floor <= floor_usd:
        return on_floor
    return a.ops_usd_per_month / (p - g_usd)


def format_advice(advice: Advice) -> str:
    a = advice.assumptions
    lines = [f"source spans {advice.span_s / 3600:.2f} h; monthly figures are x{advice.month_factor:,.1f}", ""]
    for t in advice.tiers:
        be = "never (the API is cheaper per token)" if t.break_even_tokens_per_month is None else \
            f"{t.break_even_tokens_per_month / 1e6:,.1f}M tokens/month"
        lines += [
            f"tier {t.tier}: {t.tokens_per_month / 1e6:,.1f}M tokens/month "
            f"({t.input_tokens_per_month / 1e6:,.1f}M in, {t.output_tokens_per_month / 1e6:,.1f}M out), "
            f"API ${t.api_usd_per_month:,.2f}/month",
            f"  self-hosted as a {t.model_size_b}B model: {t.gpu_hours_per_month:,.1f} GPU hours/month busy, "
            f"{t.gpus_always_on} GPU(s) paid, ${t.self_host_usd_per_month:,.2f}/month with ops",
            f"  break-even: {be}; " + ("self-hosting pays at this volume" if t.worth_it
                                       else "not worth it at this volume"),
        ]
    lo, hi = a.seed_threshold_tokens
    lines += ["", f"rule of thumb (seeds/001 FAQ): self-hosting is usually not worth it below "
                  f"~{lo / 1e6:.0f}-{hi / 1e6:.0f}M tokens a month", "", "assumptions (override with flags or "
                  "--assumptions FILE.yaml):"]
    for row in a.listed():
        note = f"  ({row['note']})" if row.get("note") else ""
        lines.append(f"  {row['name']} = {row['value']}{note}")
    return "\n".join(lines)
