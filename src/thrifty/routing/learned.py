"""A learned routing policy: P(the cheap tier answers as well as the strong one) for a request.

Rules route on what a person can name (request type, size); a learned policy ranks requests by
how likely the cheap tier's answer is as good as the strong tier's, fitted on labelled outcomes
(the `thrifty eval router` rows): a row is positive when the cheap model scored at least what the
strong model scored. The gateway sends a request to the cheap tier when that probability is at
least the threshold, so the threshold is the cost-quality knob.

Two logistic regressions (numpy, Newton's method with an L2 penalty; no scikit-learn):

- `cheap`: over the router's own request features (`routing.features`), which the gateway has
  already computed for the call, so a decision is one dot product of ~25 numbers (microseconds);
  this is the model the gateway serves.
- `embedding` (optional, `thrifty train router --embed`): the same features plus the MiniLM
  embedding of the prompt (`cache.semantic.OnnxEmbedder`). Embedding a prompt costs milliseconds
  on a CPU, more than the decision budget, so the router never computes one: it uses the
  embedding the semantic cache stage computed for the call's last user turn (`Call.embedding`,
  handed to `Router.decide(..., embedding=...)`). A call without one (no semantic cache on its
  route, a cache hit answered before routing, another dialect), or with one of another size than
  the policy was trained on (a different embedder), is decided by the `cheap` model and its own
  threshold: the fallback is silent and by design.

  What that embedding can carry: MiniLM reads the first 256 tokens of the turn, so prompts that
  share a long few-shot preamble in one user message share one embedding (RouterBench's
  ARC-Challenge and Winogrande prompts: one vector per data set), and the model then only knows
  which kind of request it is. bench/learned_router.py --compare measures what it adds.

The answer stage (optional, `Policy.answer`; version 3): a learned cascade, FrugalGPT's scorer
over the query *and* the cheap answer. A rule serving such a policy sends every call to the cheap
tier; the escalation step (routing/escalation.py) takes the consistency sample from the tier's
peer deployment as the `consistency` check does, and scores a third logistic regression over the
cheap features plus the answers' (`ANSWER_FEATURES`: agreement of the two samples exactly as
`checks.check_consistency` decides it, split by the number of options, word overlap, whether an
option letter was found, lengths, refusal and hedging markers, truncation). Below its threshold
the call escalates ("policy: answer score 0.31 < 0.55"). Its label is the prompt models' (cheap
score >= strong score) and its threshold is chosen out-of-fold on the training rows with the cheap
and the peer model paid on every call. A policy trained without a peer (one model per tier, as
RouterArena's) reads the cheap answer alone. Streamed calls take no consistency sample (as the
`consistency` check), so the answer stage does not run on them: the cheap answer is served unless
the rule's other checks fail.

The policy file is JSON (`"format": "thrifty.router-policy"`, `"version": 3`; a file without a
version is version 1 and reads the same; version 2 adds the embedding's dimension, version 3 the
optional `answer` stage with its own feature version, consistency settings and grid): both models (standardisation folded into the weights),
the threshold, the threshold grid with the expected strong-tier share, quality and cost at each
(out-of-fold on the training rows), the feature version, what it was trained on (the file, the
seed and split, and a short digest of every training prompt, so an evaluation can leave those
rows out), and since version 2 the embedding model's `dimension` (a version-1 file's is its
weight count less the cheap features').
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from thrifty.errors import ThriftyError
from thrifty.routing.checks import check_refusal, chosen_option, compare_samples
from thrifty.routing.features import REQUEST_TYPES, RequestFeatures

FEATURE_VERSION = 1
ANSWER_FEATURE_VERSION = 1
FORMAT = "thrifty.router-policy"
VERSION = 3  # of the file; 1 (no "version" field) and 2 are read too
VERSIONS = (1, 2, 3)

# Names of the cheap feature vector's entries, in order (the policy file lists them too).
CHEAP_FEATURES: tuple[str, ...] = (
    "log_input_tokens", "log_prompt_chars", "turns", "messages", "tools", "tool_count", "tool_results",
    "structured_output", "code", "choices", "retrieved_chunks", "long_context", "images",
    "max_output_tokens_set", "log_max_output_tokens", *(f"type={t}" for t in REQUEST_TYPES))

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, d) unit vectors (OnnxEmbedder.embed_batch)


def cheap_vector(f: RequestFeatures) -> list[float]:
    """The request features as numbers (counts capped and logged so one odd request cannot dominate)."""
    rtype = f.request_type
    mo = f.max_output_tokens
    return [math.log1p(f.input_tokens), math.log1p(f.prompt_chars), min(f.turns, 20), min(f.messages, 50),
            float(f.tools), min(f.tool_count, 50), min(f.tool_results, 50), float(f.structured_output),
            float(f.code), min(f.choices, 10), min(f.retrieved_chunks, 50), float(f.long_context), float(f.images),
            0.0 if mo is None else 1.0, math.log1p(mo or 0), *[1.0 if rtype == t else 0.0 for t in REQUEST_TYPES]]


# Names of the answer stage's own features (after the cheap ones), in order.
ANSWER_FEATURES: tuple[str, ...] = (
    "has_second", "agree", "agree_binary", "agree_multi", "agree_open", "overlap", "option_found",
    "second_option_found", "log_answer_chars", "log_second_chars", "refusal", "hedges",
    "code_block", "empty", "truncated")

_HEDGE_WORDS = frozenset({"maybe", "perhaps", "possibly", "probably", "might", "unclear", "however",
                          "alternatively", "assuming", "likely", "unsure"})
_HEDGE_PHRASES = ("it depends", "not sure", "not certain", "i think", "i believe")
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Consistency:
    """How two samples are compared (`checks.compare_samples`): the same settings in training and serving."""

    mode: str = "auto"
    threshold: float = 0.6


def answer_vector(answer: str, second: str | None, choices: int, finish_reason: str | None = None,
                  consistency: Consistency = Consistency()) -> list[float]:
    """The answer stage's numbers for the cheap tier's `answer` and, when one was taken, a `second`
    sample (the peer's): agreement as the gateway's consistency check decides it
    (`checks.compare_samples`), split by the number of lettered options (two options agree by
    chance half the time, four a quarter), the words they share, whether an option letter was
    found, lengths, refusal and hedging markers. The comparison reads the first `_READ` characters of
    each (an option letter is looked for in the first 600 anyway), each text tokenised once, so a
    page of code costs what a paragraph does."""
    text = answer or ""
    lettered = choices >= 2 and consistency.mode == "auto"
    has = second is not None
    agree, overlap, words = False, 0.0, None
    found = (lettered and chosen_option(text, choices) is not None, False)
    if has:
        cmp = compare_samples(text[:_READ], (second or "")[:_READ], mode=consistency.mode,
                              threshold=consistency.threshold, choices=choices)
        agree = cmp.agree
        if cmp.lettered:
            found = (cmp.options[0] is not None, cmp.options[1] is not None)
            overlap = float(agree)
        else:
            overlap = cmp.overlap if cmp.overlap is not None else 0.0
            words = cmp.words[0] if cmp.words is not None else None
    if words is None:
        words = frozenset(_WORDS.findall(text[:_READ].lower()))
    head = text[:_READ].lower()
    hedges = len(_HEDGE_WORDS & words) + sum(1 for phrase in _HEDGE_PHRASES if phrase in head)
    other = second or ""
    return [float(has), float(agree), float(agree and choices == 2), float(agree and choices >= 3),
            float(agree and not lettered), overlap, float(found[0]), float(found[1]),
            math.log1p(len(text.strip())), math.log1p(len(other.strip())) if has else 0.0,
            float(check_refusal(text) is not None), float(min(hedges, 3)), float("```" in text), float(not text.strip()),
            float(finish_reason in ("length", "max_tokens"))]


_READ = 1000  # characters of each answer the answer stage compares and reads for hedges


def digest(prompt: str) -> str:
    """A short fingerprint of a prompt: enough to recognise a training row, not to recover it."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


# --- the model ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Logistic:
    """P(y=1 | x) = sigmoid(weights . x + bias), the inputs' standardisation folded in."""

    weights: tuple[float, ...]
    bias: float
    l2: float = 0.0

    def logit(self, x: Sequence[float]) -> float:
        return self.bias + sum(map(operator.mul, self.weights, x))

    def probability(self, x: Sequence[float]) -> float:
        return _sigmoid(self.logit(x))

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        z = X @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def to_json(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "bias": self.bias, "l2": self.l2}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Logistic":
        return cls(tuple(float(w) for w in raw["weights"]), float(raw["bias"]), float(raw.get("l2", 0.0)))


def _sigmoid(z: float) -> float:
    if z < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 30) -> Logistic:
    """L2-penalised logistic regression by Newton's method on standardised inputs (the bias unpenalised)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant column carries no information: weight stays 0
    Z = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    d = Z.shape[1]
    penalty = np.full(d, l2)
    penalty[-1] = 0.0
    w = np.zeros(d)
    base = y.mean() if len(y) else 0.5
    w[-1] = math.log(max(base, 1e-6) / max(1 - base, 1e-6))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -60, 60)))
        grad = Z.T @ (p - y) + penalty * w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(penalty) + 1e-9 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    weights = w[:-1] / scale
    bias = float(w[-1] - weights @ mean)
    return Logistic(tuple(float(v) for v in weights), bias, l2)


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [np.array(sorted(order[i::k]), dtype=int) for i in range(k)]


def out_of_fold(X: np.ndarray, y: np.ndarray, l2: float, folds: Sequence[np.ndarray]) -> np.ndarray:
    """Each row's probability from a model fitted on the other folds."""
    p = np.zeros(len(y))
    for idx in folds:
        rest = np.setdiff1d(np.arange(len(y)), idx)
        if len(rest) == 0 or len(set(y[rest].tolist())) < 2:
            p[idx] = y[rest].mean() if len(rest) else 0.5
            continue
        p[idx] = fit_logistic(X[rest], y[rest], l2).probabilities(X[idx])
    return p


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


L2_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)


def fit_with_cv(X: np.ndarray, y: np.ndarray, folds: Sequence[np.ndarray]) -> tuple[Logistic, np.ndarray]:
    """The penalty with the best out-of-fold log loss; the model refitted on every row, and its OOF probabilities."""
    best: tuple[float, float, np.ndarray] | None = None
    for l2 in L2_GRID:
        p = out_of_fold(X, y, l2, folds)
        loss = _log_loss(y, p)
        if best is None or loss < best[0] - 1e-12:
            best = (loss, l2, p)
    assert best is not None
    return fit_logistic(X, y, best[1]), best[2]


# --- the answer stage (the cascade) ----------------------------------------------------------------

@dataclass(slots=True)
class AnswerStage:
    """P(the cheap tier's answer is as good as the strong tier's), read from the request's features
    and the cheap answer (with the peer's second sample, when `peer_model` is set): the gateway
    serves the cheap answer when it is at least `threshold`, else escalates."""

    model: Logistic  # over CHEAP_FEATURES + ANSWER_FEATURES
    threshold: float
    peer_model: str | None = None  # whose answer the second sample was in training (None: one answer only)
    consistency: Consistency = Consistency()
    grid: list[dict[str, Any]] = field(default_factory=list)  # OOF on train, cheap + peer paid on every call
    feature_version: int = ANSWER_FEATURE_VERSION
    _weights: tuple[np.ndarray, float] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def needs_second(self) -> bool:
        return self.peer_model is not None

    def score(self, features: RequestFeatures, answer: str, second: str | None = None,
              finish_reason: str | None = None) -> float:
        """The model's probability for one answer (a second sample is ignored by a one-answer stage)."""
        return self.model.probability(self.vector(features, answer, second, finish_reason))

    def vector(self, features: RequestFeatures, answer: str, second: str | None,
               finish_reason: str | None = None) -> list[float]:
        """The numbers the model reads: the request's cheap features, then the answers' (ANSWER_FEATURES)."""
        return cheap_vector(features) + answer_vector(answer, second if self.needs_second else None,
                                                      features.choices, finish_reason, self.consistency)

    def to_json(self) -> dict[str, Any]:
        return {**self.model.to_json(), "features": [*CHEAP_FEATURES, *ANSWER_FEATURES],
                "feature_version": self.feature_version, "threshold": self.threshold, "peer_model": self.peer_model,
                "consistency": {"mode": self.consistency.mode, "threshold": self.consistency.threshold},
                "grid": self.grid}

    @classmethod
    def from_json(cls, raw: Any) -> "AnswerStage":
        if not isinstance(raw, dict):
            raise ValueError("answer must be an object")
        if raw.get("feature_version") != ANSWER_FEATURE_VERSION:
            raise ValueError(f"answer feature version {raw.get('feature_version')!r}, this Thrifty computes "
                             f"version {ANSWER_FEATURE_VERSION}: retrain it with `thrifty train router`")
        model = Logistic.from_json(raw)
        expected = len(CHEAP_FEATURES) + len(ANSWER_FEATURES)
        if len(model.weights) != expected:
            raise ValueError(f"answer model has {len(model.weights)} weights, expected {expected}")
        cons = raw.get("consistency") or {}
        if not isinstance(cons, dict) or cons.get("mode", "auto") not in ("auto", "exact", "overlap"):
            raise ValueError(f"answer.consistency must be {{\"mode\": auto|exact|overlap, \"threshold\"}}, "
                             f"got {cons!r}")
        peer = raw.get("peer_model")
        return cls(model, float(raw["threshold"]), None if peer is None else str(peer),
                   Consistency(str(cons.get("mode", "auto")), float(cons.get("threshold", 0.6))),
                   list(raw.get("grid") or []))


# --- the policy -------------------------------------------------------------------------------------

@dataclass(slots=True)
class Policy:
    """Which of two tiers serves a request: the cheap one when P(cheap is as good) >= threshold."""

    cheap_tier: str
    strong_tier: str
    cheap_model: str  # the models whose outcomes labelled the training rows
    strong_model: str
    cheap: Logistic  # over CHEAP_FEATURES: what the gateway serves
    threshold: float
    embedding: Logistic | None = None  # over CHEAP_FEATURES + the prompt's embedding
    embedding_threshold: float | None = None
    grid: list[dict[str, Any]] = field(default_factory=list)  # the cheap model's thresholds (OOF, train)
    embedding_grid: list[dict[str, Any]] = field(default_factory=list)
    trained_on: dict[str, Any] = field(default_factory=dict)
    feature_version: int = FEATURE_VERSION
    answer: AnswerStage | None = None  # the cascade: every call to the cheap tier, its answer scored
    _embedding_weights: tuple[Logistic, np.ndarray] | None = field(default=None, init=False, repr=False,
                                                                   compare=False)

    @property
    def embedding_dimension(self) -> int | None:
        """How many numbers the embedding model expects after the cheap features (None without one)."""
        return None if self.embedding is None else len(self.embedding.weights) - len(CHEAP_FEATURES)

    def uses_embedding(self, embedding: Sequence[float] | None) -> bool:
        """Whether `embedding` feeds the embedding model: there is one, and the sizes agree (else the
        cheap model decides: an embedding of another size comes from another embedder)."""
        return embedding is not None and self.embedding is not None and len(embedding) == self.embedding_dimension

    def p_cheap(self, features: RequestFeatures, embedding: Sequence[float] | None = None) -> float:
        """P(the cheap tier's answer is as good as the strong tier's); the embedding model when given
        an embedding it can use (`uses_embedding`), else the cheap-features model."""
        x = cheap_vector(features)
        if self.uses_embedding(embedding):
            assert self.embedding is not None and embedding is not None
            k = len(x)
            w = self.embedding.weights
            z = self.embedding.bias + sum(map(operator.mul, w[:k], x)) + float(np.dot(self._emb_w(), embedding))
            return _sigmoid(z)
        return self.cheap.probability(x)

    def _emb_w(self) -> np.ndarray:
        """The embedding part of the embedding model's weights as an array (kept for the model it came from)."""
        model = self.embedding
        assert model is not None
        cached = self._embedding_weights
        if cached is None or cached[0] is not model:
            cached = self._embedding_weights = (model, np.asarray(model.weights[len(CHEAP_FEATURES):],
                                                                  dtype=np.float64))
        return cached[1]

    def use_cheap(self, features: RequestFeatures, threshold: float | None = None,
                  embedding: Sequence[float] | None = None) -> tuple[bool, float]:
        """Whether the cheap tier serves, and the probability it was decided on; the threshold is the
        model's own (the embedding model's when it decides) unless one is given."""
        p = self.p_cheap(features, embedding)
        if threshold is None:
            threshold = self.embedding_threshold if self.uses_embedding(embedding) \
                and self.embedding_threshold is not None else self.threshold
        return p >= threshold, p

    def trained_digests(self) -> frozenset[str]:
        return frozenset(self.trained_on.get("digests", ()))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "feature_version": self.feature_version,
            "tiers": {"cheap": self.cheap_tier, "strong": self.strong_tier},
            "models": {"cheap": self.cheap_model, "strong": self.strong_model},
            "threshold": self.threshold, "features": list(CHEAP_FEATURES),
            "cheap": {**self.cheap.to_json(), "grid": self.grid},
            "embedding": None if self.embedding is None else {
                **self.embedding.to_json(), "dimension": self.embedding_dimension,
                "threshold": self.embedding_threshold, "grid": self.embedding_grid},
            "answer": None if self.answer is None else self.answer.to_json(),
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str = "<policy>") -> "Policy":
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ThriftyError(f"{where}: not a router policy (no \"format\": \"{FORMAT}\")")
        version = raw.get("version", 1)
        if version not in VERSIONS:
            raise ThriftyError(f"{where}: router policy version {version!r}, this Thrifty reads versions "
                               f"{', '.join(map(str, VERSIONS))}: upgrade Thrifty or retrain it with "
                               "`thrifty train router`")
        if raw.get("answer") is not None and version < 3:
            raise ThriftyError(f"{where}: malformed router policy: an answer stage needs version 3, "
                               f"the file says {version}")
        if raw.get("feature_version") != FEATURE_VERSION:
            raise ThriftyError(f"{where}: feature version {raw.get('feature_version')!r}, this Thrifty computes "
                               f"version {FEATURE_VERSION}: retrain it with `thrifty train router`")
        try:
            cheap = Logistic.from_json(raw["cheap"])
            if len(cheap.weights) != len(CHEAP_FEATURES):
                raise ValueError(f"cheap model has {len(cheap.weights)} weights, expected {len(CHEAP_FEATURES)}")
            emb = raw.get("embedding")
            if emb and len(emb["weights"]) <= len(CHEAP_FEATURES):
                raise ValueError(f"embedding model has {len(emb['weights'])} weights, expected more than "
                                 f"{len(CHEAP_FEATURES)}")
            if emb and emb.get("dimension") is not None \
                    and int(emb["dimension"]) != len(emb["weights"]) - len(CHEAP_FEATURES):
                raise ValueError(f"embedding model has {len(emb['weights'])} weights, not {len(CHEAP_FEATURES)} "
                                 f"features + dimension {emb['dimension']}")
            return cls(cheap_tier=str(raw["tiers"]["cheap"]), strong_tier=str(raw["tiers"]["strong"]),
                       cheap_model=str(raw["models"]["cheap"]), strong_model=str(raw["models"]["strong"]),
                       cheap=cheap, threshold=float(raw["threshold"]),
                       embedding=Logistic.from_json(emb) if emb else None,
                       embedding_threshold=float(emb["threshold"]) if emb and emb.get("threshold") is not None
                       else None,
                       grid=list(raw["cheap"].get("grid", [])), embedding_grid=list(emb.get("grid", [])) if emb else [],
                       trained_on=dict(raw.get("trained_on") or {}), feature_version=FEATURE_VERSION,
                       answer=AnswerStage.from_json(raw["answer"]) if raw.get("answer") is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ThriftyError(f"{where}: malformed router policy: {exc}") from None

    def save(self, path: str) -> None:
        try:
            Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ThriftyError(f"cannot write {path}: {exc.strerror or exc}") from exc


def load_policy(path: str | Path) -> Policy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ThriftyError(f"cannot read router policy {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ThriftyError(f"{path}: not JSON: {exc.msg}") from None
    return Policy.from_json(raw, str(path))


# --- training ---------------------------------------------------------------------------------------
