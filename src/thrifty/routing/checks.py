"""Escalation checks: pure functions over a lower tier's answer that say why it is not good enough.

Each check returns None when the answer passes and a short reason string when it fails; the
gateway re-runs the request one tier up on a reason (`Router.escalate`). Checks never call a model.

- `check_empty`, `check_too_short`, `check_truncated` (finish reason `length` / `max_tokens`),
  `check_refusal` (refusals and "not sure" answers, looked for at the start of the answer);
- `check_schema`: the answer is JSON valid against the requested schema. Schemas are compiled once
  (cached by identity and content) into closures for the keywords structured outputs use (type,
  properties, required, additionalProperties, items, enum, const, anyOf, local $ref, bounds,
  pattern); a schema with other keywords is validated by `jsonschema` when it is installed;
- self-reported confidence: `add_confidence_field` / `request_confidence` add a `confidence`
  number to the requested schema, `strip_confidence` takes it out of the answer before the client
  sees it, `check_confidence` compares it with the threshold;
- `check_consistency`: two samples agree (the chosen option for multiple-choice requests,
  normalised equality, or a token-overlap threshold).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

from thrifty.errors import SchemaError
from thrifty.wire import AnswerView, Wire

_MISSING = object()


# --- format and content ---------------------------------------------------------------------

def check_empty(text: str) -> str | None:
    return "empty answer" if not text or text.isspace() else None


def check_too_short(text: str, min_chars: int) -> str | None:
    n = len(text.strip())
    return f"answer too short ({n} < {min_chars} characters)" if n < min_chars else None


def check_truncated(finish_reason: str | None) -> str | None:
    if finish_reason in ("length", "max_tokens"):
        return "truncated at the output token limit"
    return None


_REFUSAL = re.compile(
    r"(?i)\b(?:i(?:'m| am) sorry,? but|i (?:can(?:no|')t|cannot|won't|will not|am unable to|'m unable to|"
    r"am not able to|'m not able to) (?:help|assist|provide|answer|comply|do that|fulfil|complete|share)|"
    r"as an ai(?: language model)?,? i|i must decline|i'm afraid i can(?:no|')t)")
_UNSURE = re.compile(
    r"(?i)\b(?:i(?:'m| am) not (?:sure|certain)|i (?:do not|don't) know|not enough (?:information|context)|"
    r"insufficient (?:information|context)|(?:cannot|can't|unable to) (?:be )?determine|"
    r"i (?:do not|don't) have (?:enough |sufficient )?(?:information|access|context))")
_REFUSAL_WINDOW = 300


def check_refusal(text: str) -> str | None:
    """A refusal or a "not sure" near the start of the answer (where models put them)."""
    head = text[:_REFUSAL_WINDOW]
    if _REFUSAL.search(head):
        return "refusal"
    if _UNSURE.search(head):
        return "model not sure"
    return None


# --- structured output ----------------------------------------------------------------------

Validator = Callable[[Any], "str | None"]
_compiled: dict[int, tuple[Any, Validator]] = {}
_compiled_by_text: dict[bytes, Validator] = {}
_MAX_COMPILED = 1024


def check_schema(answer: str | Any, schema: Mapping[str, Any]) -> str | None:
    """None when `answer` (JSON text, or an already parsed value) is valid against `schema`."""
    if isinstance(answer, str):
        try:
            value = parse_json_answer(answer)
        except ValueError:
            return "structured output is not valid JSON"
    else:
        value = answer
    problem = compile_schema(schema)(value)
    return None if problem is None else f"structured output does not match the schema: {problem}"


def parse_json_answer(text: str) -> Any:
    """The JSON value of an answer, allowing a ```json fence around it."""
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        s = s.rsplit("```", 1)[0]
    try:
        return orjson.loads(s)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def compile_schema(schema: Mapping[str, Any]) -> Validator:
    """A validator for `schema`, compiled once (cached by object identity, then by content)."""
    hit = _compiled.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    fn = _compiled_by_text.get(text)
    if fn is None:
        fn = _build(schema)
        if len(_compiled_by_text) >= _MAX_COMPILED:
            _compiled_by_text.clear()
            _compiled.clear()
        _compiled_by_text[text] = fn
    _compiled[id(schema)] = (schema, fn)
    return fn


_FAST_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
    "$defs", "definitions", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
    "maxLength", "minItems", "maxItems", "pattern", "nullable",
    # annotations: no effect on validity
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "format", "strict",
    "readOnly", "writeOnly", "deprecated", "name",
})


def _build(schema: Mapping[str, Any]) -> Validator:
    if not isinstance(schema, Mapping):
        raise SchemaError("a schema must be a JSON object")
    if _only_fast_keywords(schema):
        return _Compiler(schema).compile(schema, "$")
    try:
        import jsonschema
    except ImportError:  # validate what the fast path knows; unknown keywords are not asserted
        return _Compiler(schema).compile(schema, "$")
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema)

    def slow(value: Any) -> str | None:
        if validator.is_valid(value):
            return None
        err = jsonschema.exceptions.best_match(validator.iter_errors(value))
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        return f"{where}: {err.message}"

    return slow


def _only_fast_keywords(node: Any) -> bool:
    if isinstance(node, list):
        return all(_only_fast_keywords(n) for n in node)
    if not isinstance(node, Mapping):
        return True
    for key, value in node.items():
        if key not in _FAST_KEYWORDS:
            return False
        if key in ("properties", "$defs", "definitions"):
            if not isinstance(value, Mapping) or not all(_only_fast_keywords(v) for v in value.values()):
                return False
        elif key in ("items", "additionalProperties", "anyOf") and not _only_fast_keywords(value):
            return False
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            return False
    return True


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Validator] = {}

    def compile(self, s: Any, path: str) -> Validator:
        if s is True or s == {}:
            return lambda v: None
        if s is False:
            return lambda v: "no value is allowed here"
        if not isinstance(s, Mapping):
            raise SchemaError(f"{path}: a schema must be an object or a boolean")
        steps: list[Validator] = []
        if "$ref" in s:
            steps.append(self._ref(s["$ref"]))
        if "type" in s:
            steps.append(self._type(s["type"], bool(s.get("nullable"))))
        if "enum" in s:
            options = list(s["enum"])
            steps.append(lambda v: None if any(_same(v, o) for o in options)
                         else f"{_short(v)} is not one of {options}")
        if "const" in s:
            want = s["const"]
            steps.append(lambda v: None if _same(v, want) else f"{_short(v)} is not {want!r}")
        if "anyOf" in s:
            alts = [self.compile(a, path) for a in s["anyOf"]]
            steps.append(lambda v: None if any(a(v) is None for a in alts) else f"{_short(v)} matches no anyOf branch")
        steps.extend(self._object(s, path))
        steps.extend(self._array(s, path))
        steps.extend(self._scalar(s))
        if len(steps) == 1:
            return steps[0]

        def run(v: Any) -> str | None:
            for step in steps:
                problem = step(v)
                if problem is not None:
                    return problem
            return None

        return run

    def _ref(self, ref: str) -> Validator:
        found = self.refs.get(ref)
        if found is not None:
            return found
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise SchemaError(f"unresolvable $ref {ref!r}")
            target = target[part]
        slot: list[Validator] = []
        self.refs[ref] = lambda v: slot[0](v)  # recursive schemas refer to themselves
        slot.append(self.compile(target, ref))
        return self.refs[ref]

    @staticmethod
    def _type(t: Any, nullable: bool) -> Validator:
        names = [t] if isinstance(t, str) else list(t)
        if nullable:
            names.append("null")
        tests = [_TYPES[n] for n in names if n in _TYPES]
        if len(tests) != len(names):
            raise SchemaError(f"unknown type in {t!r}")
        want = "/".join(names)
        return lambda v: None if any(test(v) for test in tests) else f"expected {want}, got {_short(v)}"

    def _object(self, s: Mapping[str, Any], path: str) -> list[Validator]:
        props = {k: self.compile(sub, f"{path}.{k}") for k, sub in (s.get("properties") or {}).items()}
        required = list(s.get("required") or ())
        extra = s.get("additionalProperties", True)
        extra_fn = None if extra is True else self.compile(extra, f"{path}.*")
        if not props and not required and extra_fn is None:
            return []

        def check(v: Any) -> str | None:
            if not isinstance(v, dict):
                return None  # `type` says whether it must be an object
            for key in required:
                if key not in v:
                    return f"missing required property {key!r}"
            for key, item in v.items():
                fn = props.get(key)
                if fn is None:
                    if extra_fn is None:
                        continue
                    problem = extra_fn(item)
                    if problem is not None:
                        return f"{key}: " + ("unexpected property" if extra is False else problem)
                else:
                    problem = fn(item)
                    if problem is not None:
                        return f"{key}: {problem}"
            return None

        return [check]

    def _array(self, s: Mapping[str, Any], path: str) -> list[Validator]:
        out: list[Validator] = []
        if "items" in s and isinstance(s["items"], (Mapping, bool)):
            item_fn = self.compile(s["items"], f"{path}[]")

            def items(v: Any) -> str | None:
                if isinstance(v, list):
                    for i, item in enumerate(v):
                        problem = item_fn(item)
                        if problem is not None:
                            return f"[{i}]: {problem}"
                return None

            out.append(items)
        lo, hi = s.get("minItems"), s.get("maxItems")
        if lo is not None or hi is not None:
            out.append(lambda v: None if not isinstance(v, list) or ((lo is None or len(v) >= lo) and
                                                                    (hi is None or len(v) <= hi))
                       else f"{len(v)} items, outside [{lo}, {hi}]")
        return out

    @staticmethod
    def _scalar(s: Mapping[str, Any]) -> list[Validator]:
        out: list[Validator] = []
        lo, hi = s.get("minimum"), s.get("maximum")
        xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        if any(b is not None for b in (lo, hi, xlo, xhi)):
            def bounds(v: Any) -> str | None:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    return None
                if (lo is not None and v < lo) or (hi is not None and v > hi) or \
                        (xlo is not None and v <= xlo) or (xhi is not None and v >= xhi):
                    return f"{v} is out of range"
                return None

            out.append(bounds)
        nlo, nhi = s.get("minLength"), s.get("maxLength")
        if nlo is not None or nhi is not None:
            out.append(lambda v: None if not isinstance(v, str) or ((nlo is None or len(v) >= nlo) and
                                                                   (nhi is None or len(v) <= nhi))
                       else f"string of length {len(v)}, outside [{nlo}, {nhi}]")
        if "pattern" in s:
            rx = re.compile(s["pattern"])
            out.append(lambda v: None if not isinstance(v, str) or rx.search(v)
                       else f"{_short(v)} does not match pattern")
        return out


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0 but True != 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


# --- self-reported confidence ---------------------------------------------------------------

CONFIDENCE_DESCRIPTION = ("Your confidence that this answer is correct, from 0 (a guess) to 1 (certain).")


def add_confidence_field(schema: Mapping[str, Any], field: str = "confidence") -> dict[str, Any]:
    """A copy of an object schema that also requires a `field` number in [0, 1]."""
    if schema.get("type") != "object" and "properties" not in schema:
        raise SchemaError("self-reported confidence needs an object schema")
    out = copy.deepcopy(dict(schema))
    props = dict(out.get("properties") or {})
    if field in props:
        raise SchemaError(f"the schema already has a {field!r} property")
    props[field] = {"type": "number", "minimum": 0, "maximum": 1, "description": CONFIDENCE_DESCRIPTION}
    out["properties"] = props
    out["required"] = list(out.get("required") or ()) + [field]
    return out


def request_confidence(body: Mapping[str, Any], wire: Wire, field: str = "confidence") -> dict[str, Any] | None:
    """A copy of a request whose structured-output schema also asks for `field`, or None when the
    request has no object schema to extend."""
    schema = wire.requested_schema(body)
    if schema is None:
        return None
    try:
        return wire.with_requested_schema(body, add_confidence_field(schema, field))
    except SchemaError:
        return None


def strip_confidence(answer: str | Mapping[str, Any], field: str = "confidence") -> tuple[Any, float | None]:
    """The answer without `field`, and the confidence it reported (None when absent or not a number).

    Text in, text out (compact JSON); an unparseable text comes back unchanged.
    """
    was_text = isinstance(answer, str)
    if was_text:
        try:
            value = parse_json_answer(answer)  # type: ignore[arg-type]
        except ValueError:
            return answer, None
    else:
        value = answer
    if not isinstance(value, dict) or field not in value:
        return answer, None
    value = dict(value)
    raw = value.pop(field)
    conf = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
    return (orjson.dumps(value).decode() if was_text else value), conf


def strip_confidence_from_answer(body: dict[str, Any], wire: Wire,
                                 field: str = "confidence") -> tuple[dict[str, Any], float | None]:
    """A copy of an answer body with `field` taken out of its structured output, and the confidence."""
    return wire.map_structured_answer(body, lambda value: strip_confidence(value, field))


def check_confidence(confidence: float | None, threshold: float) -> str | None:
    if confidence is None:
        return "no self-reported confidence"
    if confidence < threshold:
        return f"self-reported confidence {confidence:.2f} below {threshold:.2f}"
    return None


# --- consistency ----------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_OPTION_START = re.compile(r"^\(?([A-J])(?:[).:\]]|\s*$|\s*\n)")
_OPTION_SAID = re.compile(r"(?:\\boxed\{\s*|\b(?i:answer|option|choice)(?: (?i:is))?\s*:?\s*\(?)([A-J])\b")


def normalise(text: str) -> str:
    """Lowercase, words only, single spaces: what two agreeing answers have in common."""
    return " ".join(_WORD.findall(text.lower()))


def chosen_option(text: str, choices: int = 10) -> str | None:
    """The option letter a multiple-choice answer picks ("B", "(B)", "\\boxed{B}", "Answer: B")."""
    s = text.strip()
    m = _OPTION_START.match(s) or _OPTION_SAID.search(s[:600])
    if m is None:
        return None
    letter = m.group(1)
    return letter if ord(letter) - 65 < max(choices, 1) else None


def token_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two answers' word sets (1.0 for two empty answers)."""
    return _jaccard(set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower())))


def _jaccard(wa: set[str], wb: set[str]) -> float:
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


@dataclass(frozen=True, slots=True)
class Comparison:
    """What comparing two samples found (`compare_samples`): the consistency check's verdict and the
    numbers behind it, each text read once (a learned answer stage uses them as features)."""

    reason: str | None  # None: the samples agree (what `check_consistency` returns)
    lettered: bool  # compared by the option letter each picks
    options: tuple[str | None, str | None] = (None, None)  # the letters found (lettered comparisons)
    overlap: float | None = None  # word-set Jaccard (free-text comparisons that were not equal)
    words: tuple[frozenset[str], frozenset[str]] | None = None  # the two word sets (free text)

    @property
    def agree(self) -> bool:
        return self.reason is None


def compare_samples(first: str, second: str, *, mode: str = "auto", threshold: float = 0.6,
                    choices: int = 0) -> Comparison:
    """Two samples compared the way the `consistency` check compares them. `auto`: the chosen
    option when the request has lettered choices, else normalised equality or word overlap at
    `threshold`; `exact`: normalised equality only."""
    if mode == "auto" and choices >= 2:
        a, b = chosen_option(first, choices), chosen_option(second, choices)
        if a is not None and a == b:
            return Comparison(None, True, (a, b))
        if a is None or b is None:
            return Comparison("samples do not both pick an option", True, (a, b))
        return Comparison(f"samples disagree ({a} vs {b})", True, (a, b))
    la, lb = _WORD.findall(first.lower()), _WORD.findall(second.lower())
    words = (frozenset(la), frozenset(lb))
    if la == lb:  # equal normalised texts (`normalise` joins the same words with single spaces)
        return Comparison(None, False, overlap=1.0, words=words)
    overlap = _jaccard(set(words[0]), set(words[1]))
    if mode == "exact":
        return Comparison("samples differ", False, overlap=overlap, words=words)
    reason = None if overlap >= threshold else f"samples disagree (overlap {overlap:.2f} < {threshold:.2f})"
    return Comparison(reason, False, overlap=overlap, words=words)


def check_consistency(first: str, second: str, *, mode: str = "auto", threshold: float = 0.6,
                      choices: int = 0) -> str | None:
    """None when two samples agree (`compare_samples`'s verdict)."""
    return compare_samples(first, second, mode=mode, threshold=threshold, choices=choices).reason


# --- all together -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckSettings:
    confidence_threshold: float = 0.6
    min_chars: int = 1
    consistency_mode: str = "auto"
    consistency_threshold: float = 0.6

    @classmethod
    def from_config(cls, esc: Any) -> "CheckSettings":
        """From an `EscalationConfig`."""
        return cls(confidence_threshold=esc.confidence_threshold, min_chars=esc.min_chars,
                   consistency_mode=esc.consistency.mode, consistency_threshold=esc.consistency.threshold)


def first_failure(answer: AnswerView, checks: tuple[str, ...] | list[str], settings: CheckSettings = CheckSettings(),
                  *, schema: Mapping[str, Any] | None = None, confidence: float | None | object = _MISSING,
                  second: str | None = None, choices: int = 0) -> str | None:
    """Run `checks` in order on an answer; the first failure's reason, or None.

    A check without what it needs is skipped: `schema` without a schema, `confidence` when no
    confidence was asked for (pass None for "asked, but the answer gave none"), `consistency`
    without a second sample.
    """
    for name in checks:
        reason = None
        if name == "empty":
            reason = None if answer.tool_call else check_empty(answer.text)
        elif name == "too_short":
            reason = None if answer.tool_call else check_too_short(answer.text, settings.min_chars)
        elif name == "truncated":
            reason = check_truncated(answer.finish_reason)
        elif name == "refusal":
            reason = None if answer.tool_call else check_refusal(answer.text)
        elif name == "schema" and schema is not None:
            reason = check_schema(answer.text, schema)
        elif name == "confidence" and confidence is not _MISSING:
            reason = check_confidence(confidence, settings.confidence_threshold)  # type: ignore[arg-type]
        elif name == "consistency" and second is not None:
            reason = check_consistency(answer.text, second, mode=settings.consistency_mode,
                                       threshold=settings.consistency_threshold, choices=choices)
        if reason is not None:
            return reason
    return None
