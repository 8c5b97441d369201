"""Recorded answers: emulator models of different quality, replayed from a routing outcomes file.

The file is the routing outcomes JSONL (see ARCHITECTURE.md), one prompt a line::

    {"prompt": "...", "outcomes": {"<recorded model>": {"score": 0.0, "cost_usd": 0.0001,
                                                        "answer": "optional recorded text"}},
     "cohort": null}

The config's `recorded.models` maps an emulator model to a recorded model of the file. When the
last user message of a plain-text request equals a recorded prompt (after whitespace
normalisation) and that recorded model has an outcome there, the emulator answers with the
recorded `answer`; without one it answers from the score: at least 0.5 gets the normal
deterministic answer, below 0.5 a visibly weak "not sure" answer (which the gateway's
`refusal` check catches). Unknown prompts, and tool or JSON requests, are answered as usual.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty_emulator.errors import EmulatorConfigError

WEAK_ANSWER = "I'm not sure I can answer this reliably. I don't have enough information to give a confident answer."
PASS_SCORE = 0.5


def normalise(text: str) -> str:
    return " ".join(text.split())


def prompt_key(text: str) -> bytes:
    return hashlib.blake2b(normalise(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def last_user_text(messages: Any) -> str | None:
    """The text of the last user message (string content, or its text parts joined), if any."""
    if not isinstance(messages, list):
        return None
    for m in reversed(messages):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            return "\n".join(p for p in parts if isinstance(p, str)) or None
        return None
    return None


@dataclass(frozen=True, slots=True)
class RecordedAnswers:
    """Index: normalised prompt hash -> emulator model -> the answer text (None: the normal one)."""

    path: str
    models: dict[str, str]  # emulator model -> recorded model name
    index: dict[bytes, dict[str, str | None]] = field(default_factory=dict)

    def answer(self, model: str, user_text: str | None) -> str | None:
        if user_text is None or not self.index:
            return None
        return self.index.get(prompt_key(user_text), {}).get(model)

    def __len__(self) -> int:
        return len(self.index)


def _outcome_answer(cfg: str, where: str, outcome: Any) -> str | None:
    if not isinstance(outcome, dict):
        raise EmulatorConfigError(cfg, "recorded.path", f"{where}: an outcome must be an object")
    answer = outcome.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer
    score = outcome.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        raise EmulatorConfigError(cfg, "recorded.path", f"{where}: an outcome needs a numeric score or an answer")
    return None if score >= PASS_SCORE else WEAK_ANSWER


def load_recorded(cfg: str, raw: Any, known_models: set[str]) -> RecordedAnswers:
    """Parse the config's `recorded` section and read its outcomes file once."""
    if not isinstance(raw, dict):
        raise EmulatorConfigError(cfg, "recorded", "must be a mapping with path and models")
    unknown = set(raw) - {"path", "models"}
    if unknown:
        raise EmulatorConfigError(cfg, "recorded", f"unknown field(s): {', '.join(sorted(unknown))}")
    path, models = raw.get("path"), raw.get("models")
    if not isinstance(path, str) or not path:
        raise EmulatorConfigError(cfg, "recorded.path", "must be the path of an outcomes JSONL file")
    if not isinstance(models, dict) or not models or not all(isinstance(v, str) for v in models.values()):
        raise EmulatorConfigError(cfg, "recorded.models", "must map emulator models to recorded model names")
    models = {str(k): v for k, v in models.items()}
    for name in models:
        if name not in known_models:
            raise EmulatorConfigError(cfg, f"recorded.models.{name}", "not a model of the emulator")
    p = Path(path)
    if not p.is_absolute() and cfg not in ("", "<config>"):
        p = Path(cfg).parent / p
    by_recorded: dict[str, list[str]] = {}
    for emu, rec in models.items():
        by_recorded.setdefault(rec, []).append(emu)
    index: dict[bytes, dict[str, str | None]] = {}
    seen: set[str] = set()
    try:
        with p.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{p}:{n}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EmulatorConfigError(cfg, "recorded.path", f"{where}: not valid JSON: {exc.msg}") from None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                        or not isinstance(row.get("outcomes"), dict):
                    raise EmulatorConfigError(cfg, "recorded.path",
                                              f"{where}: needs a prompt string and an outcomes object")
                answers = index.setdefault(prompt_key(row["prompt"]), {})
                for rec, outcome in row["outcomes"].items():
                    for emu in by_recorded.get(rec, ()):
                        answers[emu] = _outcome_answer(cfg, where, outcome)
                        seen.add(rec)
    except OSError as exc:
        raise EmulatorConfigError(cfg, "recorded.path", f"cannot read {p}: {exc.strerror or exc}") from None
    missing = sorted(set(by_recorded) - seen)
    if missing:
        raise EmulatorConfigError(cfg, "recorded.models", f"no outcomes for {', '.join(missing)} in {p}")
    return RecordedAnswers(str(p), models, {k: v for k, v in index.items() if v})
