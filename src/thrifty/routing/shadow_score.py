"""How well a shadow answer agrees with the answer the client got: a score in [0, 1], or None.

- `exact` (classification, extraction): the two answers are equal once normalised (JSON compared
  as values, text as lowercase words; a multiple-choice answer by the option it picks).
- `validator` (generation): a check that needs no model. Where the request asks for a JSON
  schema, the shadow answer must match it; for reasoning with a final number, the two final
  numbers must be equal; for Python code, the shadow's code must compile. Where none applies,
  `auto` leaves the call unscored and an explicit `validator` falls back to the escalation checks
  (empty, refusal, truncated): a weak signal, documented as such in docs/shadow.md.
- `judge`: a configured tier answers a fixed rubric prompt (`judge_messages`), and its `SCORE: n`
  (0-10) is divided by 10; an answer without a readable score leaves the call unscored.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any, Mapping

from thrifty.routing.checks import (
    check_empty, check_refusal, check_schema, check_truncated, chosen_option, normalise, parse_json_answer,
)

EXACT_TYPES = frozenset({"classification", "extraction"})
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)\n(.*?)```", re.S)
_SCORE = re.compile(r"SCORE:\s*(10|[0-9])(?:\.\d+)?\b", re.I)


@dataclass(frozen=True, slots=True)
class Score:
    method: str  # exact | validator | judge | unscored
    score: float | None
    reason: str | None = None


def score_exact(reference: str, shadow: str, choices: int = 0) -> Score:
    same = _canonical(reference, choices) == _canonical(shadow, choices)
    return Score("exact", 1.0 if same else 0.0, None if same else "answers differ")


def score_validator(reference: str, shadow: str, *, request_type: str | None, schema: Mapping[str, Any] | None,
                    finish_reason: str | None, forced: bool) -> Score:
    """A validator's verdict; `Score("unscored", None)` when none applies and not `forced`."""
    if schema is not None:
        problem = check_schema(shadow, schema)
        return Score("validator", 0.0 if problem else 1.0, problem)
    if request_type == "reasoning":
        want, got = _final_number(reference), _final_number(shadow)
        if want is not None:
            same = want == got
            return Score("validator", 1.0 if same else 0.0, None if same else f"final answer {got} != {want}")
    if request_type == "code":
        ref_code, code = _python(reference), _python(shadow)
        if ref_code is not None and _compile_error(ref_code) is None:  # the reference is Python
            if code is None:
                return Score("validator", 0.0, "no code block")
            problem = _compile_error(code)
            return Score("validator", 0.0 if problem else 1.0, problem)
    if not forced:
        return Score("unscored", None, "no validator applies")
    problem = check_empty(shadow) or check_truncated(finish_reason) or check_refusal(shadow)
    return Score("validator", 0.0 if problem else 1.0, problem)


JUDGE_RUBRIC = (
    "You grade a candidate answer against a reference answer to the same request. Score 10 when the "
    "candidate is as correct, complete and useful as the reference; 5 when it is partly right or "
    "misses something that matters; 0 when it is wrong, empty or a refusal. Style and length do not "
    "count. Reply with one line: SCORE: <0-10>.")


def judge_messages(prompt: str, reference: str, shadow: str) -> list[dict[str, str]]:
    """The judge's request (canonical chat messages), the same for every call."""
    return [{"role": "system", "content": JUDGE_RUBRIC},
            {"role": "user", "content": f"REQUEST:\n{prompt}\n\nREFERENCE ANSWER:\n{reference}\n\n"
                                        f"CANDIDATE ANSWER:\n{shadow}\n\nGrade the candidate."}]


def read_judgement(text: str) -> Score:
    m = _SCORE.search(text or "")
    if m is None:
        return Score("unscored", None, "the judge gave no SCORE")
    return Score("judge", int(m.group(1)) / 10.0)


def _canonical(text: str, choices: int) -> Any:
    try:
        return ("json", parse_json_answer(text))
    except ValueError:
        pass
    if choices:
        option = chosen_option(text, choices)
        if option is not None:
            return ("option", option)
    return ("text", normalise(text))


def _final_number(text: str) -> str | None:
    found = _NUMBER.findall(text or "")
    return found[-1].replace(",", "").rstrip(".") if found else None


def _compile_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"code does not compile: {exc.msg}"
    return None


def _python(text: str) -> str | None:
    """The first fenced block that is Python (labelled python/py, or unlabelled), else None."""
    for lang, code in _FENCE.findall(text or ""):
        if lang.lower() in ("python", "py", "python3", ""):
            return code
    return None
