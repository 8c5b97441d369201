"""The emulator's typed configuration: which models it serves, how fast, and how often they fail.

Built once (`default_config()`, optionally overlaid by `load_config(path)`) and passed to
`build_app`. A config file (YAML or JSON) looks like::

    latency_scale: 1.0         # multiplies every latency; 0 = answer at once (benchmarks)
    seed: 0                    # seeds answers and the config-driven fault dice
    openai_cache_ttl_s: 300    # idle lifetime of an OpenAI prompt-prefix cache entry
    openai_cache_prefix_rpm: 15  # requests/minute per prefix + prompt_cache_key before overflow (0: off)
    retry_after_s: 1           # an injected 429's retry-after is drawn from [this, 4 x this] seconds
    batch_seconds: 2.0         # a batch job (OpenAI Batch, Anthropic Message Batches) ends this long after creation
    batch_expire_seconds: 86400  # lines of a batch not run by then expire (the providers' 24h window)
    faults: {"429": 0.01}      # default fault probabilities for models without their own
    models:
      gpt-4o: {ttft_ms: 300, tokens_per_s: 120, faults: {"500": 0.05}}   # override
      big-model: {wire: openai, context_window: 1000000, max_output_tokens: 32768, reasoning: true}
      my-model: {wire: openai, provider: acme, ttft_ms: 100, tokens_per_s: 200}  # add
    keys: [emulator-key, {key: sk-small, rpm: 3, tpm: 10000}]   # accepted API keys (keys.py)
    rate_limits: {rpm: 500}    # default per-key limits (generous when omitted; ratelimit.py)
    recorded:                  # models of different quality, replayed from a routing outcomes file
      path: outcomes.jsonl     # relative to this config file; read once at start-up
      models: {gpt-4o-mini: weak-model, gpt-4o: strong-model}   # emulator model: recorded model

The outcomes file is the routing outcomes JSONL ({"prompt", "outcomes": {model: {"score",
"cost_usd", optional "answer"}}, "cohort"}). A request whose last user message equals a recorded
prompt (whitespace normalised) gets that model's recorded answer; without an `answer`, a score
below 0.5 gives a weak "I'm not sure..." answer and any other score the normal deterministic
one. Unknown prompts and tool/JSON requests are answered as usual; usage is counted over the
text actually answered (see `recorded.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty_emulator.errors import EmulatorConfigError
from thrifty_emulator.faults import FAULT_KINDS
from thrifty_emulator.keys import DEFAULT_KEYS, KeySpec, parse_keys
from thrifty_emulator.recorded import RecordedAnswers, load_recorded

WIRES = ("openai", "anthropic")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    wire: str  # "openai" (chat completions) or "anthropic" (messages)
    provider: str
    ttft_ms: float  # time to first token
    tokens_per_s: float  # output speed once streaming
    snapshot: str = ""  # the dated id a response reports; the name itself when empty
    reasoning: bool = False  # reports reasoning tokens inside completion_tokens
    prompt_caching: bool = True
    cache_min_tokens: int = 1024  # shortest cacheable prefix
    faults: dict[str, float] = field(default_factory=dict)  # fault kind -> probability per request
    context_window: int = 128_000  # prompt + max output, in tokens (docs/emulator.md)
    max_output_tokens: int = 16_384  # the largest max_tokens / max_completion_tokens accepted
    thinking: bool = False  # Anthropic extended thinking (`thinking: {type: enabled}`) supported

    @property
    def response_model(self) -> str:
        return self.snapshot or self.name


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    models: dict[str, ModelSpec]
    latency_scale: float = 1.0
    seed: int = 0
    openai_cache_ttl_s: float = 300.0
    fault_delay_s: float = 30.0  # how long a `timeout` fault holds the request
    retry_after_s: int = 1  # the shortest retry-after of an injected 429 (faults.retry_after)
    openai_cache_prefix_rpm: int = 15  # OpenAI cache routing: per prefix + key, beyond it requests miss
    stream_chunk_tokens: int = 4  # output tokens per streamed delta
    min_answer_tokens: int = 15
    max_answer_tokens: int = 150
    max_body_bytes: int = 32 * 1024 * 1024
    recorded: RecordedAnswers | None = None  # recorded answers of known prompts, per model
    keys: tuple[KeySpec, ...] = DEFAULT_KEYS  # the API keys accepted, with their rate limits
    batch_seconds: float = 2.0  # how long a batch job takes from creation to its end (batches.py)
    batch_expire_seconds: float = 86_400.0  # the 24h completion window: lines not run by then expire

    def key(self, value: str) -> KeySpec | None:
        return next((k for k in self.keys if k.key == value), None)

    def replace(self, **changes: Any) -> "EmulatorConfig":
        return dataclasses.replace(self, **changes)

    def find(self, wire: str, name: str) -> ModelSpec | None:
        """The model a request names, by catalog name or dated snapshot, on one wire format."""
        spec = self.models.get(name)
        if spec is None:
            spec = next((m for m in self.models.values() if m.snapshot == name), None)
        return spec if spec is not None and spec.wire == wire else None


def _m(name: str, wire: str, provider: str, ttft_ms: float, tps: float, **kw: Any) -> ModelSpec:
    return ModelSpec(name=name, wire=wire, provider=provider, ttft_ms=ttft_ms, tokens_per_s=tps, **kw)


def default_config() -> EmulatorConfig:
    """Real catalog models with latencies close to what their providers measure in 2025."""
    # Context windows and output maxima from the providers' model pages (docs/emulator.md).
    o4 = {"context_window": 128_000, "max_output_tokens": 16_384}
    gpt5 = {"context_window": 400_000, "max_output_tokens": 128_000, "reasoning": True}
    claude = {"context_window": 200_000, "max_output_tokens": 64_000, "thinking": True}
    models = [
        _m("gpt-4o", "openai", "openai", 450, 90, snapshot="gpt-4o-2024-08-06", **o4),
        _m("gpt-4o-mini", "openai", "openai", 350, 110, snapshot="gpt-4o-mini-2024-07-18", **o4),
        _m("gpt-5-nano", "openai", "openai", 700, 160, snapshot="gpt-5-nano-2025-08-07", **gpt5),
        _m("gpt-5-mini", "openai", "openai", 900, 120, snapshot="gpt-5-mini-2025-08-07", **gpt5),
        # Groq serves Llama 3.1 8B on an OpenAI-compatible API, without prompt caching.
        _m("llama-3.1-8b-instant", "openai", "groq", 120, 700, prompt_caching=False,
           context_window=131_072, max_output_tokens=131_072),
        # Minimum cacheable prompt lengths from Anthropic's prompt-caching docs.
        _m("claude-sonnet-4-5", "anthropic", "anthropic", 900, 70,
           snapshot="claude-sonnet-4-5-20250929", cache_min_tokens=1024, **claude),
        _m("claude-haiku-4-5", "anthropic", "anthropic", 500, 140,
           snapshot="claude-haiku-4-5-20251001", cache_min_tokens=4096, **claude),
        _m("claude-opus-4-1", "anthropic", "anthropic", 1500, 40,
           snapshot="claude-opus-4-1-20250805", cache_min_tokens=1024, **{**claude, "max_output_tokens": 32_000}),
    ]
    return EmulatorConfig(models={m.name: m for m in models})


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)} - {"name"}
_INT_FIELDS = {"seed", "retry_after_s", "openai_cache_prefix_rpm", "stream_chunk_tokens", "min_answer_tokens", "max_answer_tokens",
               "max_body_bytes"}
_TOP_FIELDS = {"latency_scale", "seed", "openai_cache_ttl_s", "openai_cache_prefix_rpm", "fault_delay_s", "retry_after_s",
               "stream_chunk_tokens", "min_answer_tokens", "max_answer_tokens", "max_body_bytes",
               "batch_seconds", "batch_expire_seconds"}


def _faults(path: str, key: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise EmulatorConfigError(path, key, "must be a mapping of fault kind to probability")
    out: dict[str, float] = {}
    for kind, p in raw.items():
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise EmulatorConfigError(path, f"{key}.{kind}", f"unknown fault kind (one of {', '.join(FAULT_KINDS)})")
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
            raise EmulatorConfigError(path, f"{key}.{kind}", "must be a probability between 0 and 1")
        out[kind] = float(p)
    if sum(out.values()) > 1:
        raise EmulatorConfigError(path, key, "fault probabilities add up to more than 1")
    return out


def _model(path: str, name: str, raw: Any, base: ModelSpec | None, default_faults: dict[str, float]) -> ModelSpec:
    key = f"models.{name}"
    if not isinstance(raw, dict):
        raise EmulatorConfigError(path, key, "must be a mapping")
    unknown = set(raw) - _MODEL_FIELDS
    if unknown:
        raise EmulatorConfigError(path, key, f"unknown field(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(raw)
    if "faults" in values:
        values["faults"] = _faults(path, f"{key}.faults", values["faults"])
    if base is None:
        wire = values.get("wire")
        if wire not in WIRES:
            raise EmulatorConfigError(path, f"{key}.wire", f"a new model needs wire: {' or '.join(WIRES)}")
        values.setdefault("provider", wire)
        values.setdefault("ttft_ms", 300.0)
        values.setdefault("tokens_per_s", 100.0)
        values.setdefault("faults", dict(default_faults))
        base = ModelSpec(name=name, **values)
    else:
        base = dataclasses.replace(base, **values)
    if base.wire not in WIRES:
        raise EmulatorConfigError(path, f"{key}.wire", f"must be one of {', '.join(WIRES)}")
    for f in ("ttft_ms", "tokens_per_s"):
        v = getattr(base, f)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or (f == "tokens_per_s" and v == 0):
            raise EmulatorConfigError(path, f"{key}.{f}", "must be a positive number")
    for f in ("cache_min_tokens", "context_window", "max_output_tokens"):
        v = getattr(base, f)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise EmulatorConfigError(path, f"{key}.{f}", "must be a positive integer")
    for f in ("reasoning", "prompt_caching", "thinking"):
        if not isinstance(getattr(base, f), bool):
            raise EmulatorConfigError(path, f"{key}.{f}", "must be true or false")
    for f in ("provider", "snapshot"):
        if not isinstance(getattr(base, f), str):
            raise EmulatorConfigError(path, f"{key}.{f}", "must be a string")
    return base


def config_from_dict(raw: dict[str, Any], base: EmulatorConfig | None = None,
                     path: str = "<config>") -> EmulatorConfig:
    """Overlay a parsed config document onto `base` (the defaults when omitted)."""
    base = base or default_config()
    if not isinstance(raw, dict):
        raise EmulatorConfigError(path, "", "the top level must be a mapping")
    unknown = set(raw) - _TOP_FIELDS - {"models", "faults", "recorded", "keys", "rate_limits"}
    if unknown:
        raise EmulatorConfigError(path, "", f"unknown field(s): {', '.join(sorted(unknown))}")
    top: dict[str, Any] = {}
    for k in sorted(_TOP_FIELDS & set(raw)):
        v = raw[k]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise EmulatorConfigError(path, k, "must be a non-negative number")
        if k in _INT_FIELDS and not isinstance(v, int):
            raise EmulatorConfigError(path, k, "must be a whole number")
        top[k] = v
    if top.get("stream_chunk_tokens") == 0:
        raise EmulatorConfigError(path, "stream_chunk_tokens", "must be at least 1")
    merged = dataclasses.replace(base, **top)
    if merged.min_answer_tokens > merged.max_answer_tokens:
        raise EmulatorConfigError(path, "min_answer_tokens", "must not exceed max_answer_tokens")
    default_faults = _faults(path, "faults", raw.get("faults") or {})
    models = dict(base.models)
    if default_faults:
        models = {n: (m if m.faults else dataclasses.replace(m, faults=dict(default_faults)))
                  for n, m in models.items()}
    raw_models = raw.get("models") or {}
    if not isinstance(raw_models, dict):
        raise EmulatorConfigError(path, "models", "must be a mapping of model name to settings")
    for name, spec in raw_models.items():
        models[str(name)] = _model(path, str(name), spec, models.get(str(name)), default_faults)
    if "keys" in raw or "rate_limits" in raw:
        merged = dataclasses.replace(merged, keys=parse_keys(path, raw.get("keys"), raw.get("rate_limits")))
    if raw.get("recorded") is not None:
        merged = dataclasses.replace(merged, recorded=load_recorded(path, raw["recorded"], set(models)))
    return dataclasses.replace(merged, models=models)


def load_config(path: str | Path, base: EmulatorConfig | None = None) -> EmulatorConfig:
    """Read a YAML or JSON config file (JSON is YAML) and overlay it onto the defaults."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise EmulatorConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise EmulatorConfigError(str(p), "", f"not valid YAML/JSON: {exc}") from None
    return config_from_dict(raw, base, str(p))
