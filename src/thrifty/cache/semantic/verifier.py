"""A cheap second look at a candidate hit: do the two texts differ in what embeddings blur?

Sentence embeddings put "refund order 1234" next to "refund order 1235" and "I can pay" next to
"I can't pay". The guard vetoes a hit when the numbers of the two texts differ, when one is
negated and the other is not, or (off by default) when one names a capitalised entity the other
never mentions. Which checks are on by default was decided by measurement
(bench/semantic_cache.py --part verifier): each must raise precision at an equal hit rate.
"""

from __future__ import annotations

import re
from typing import Protocol

_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({w: str(10 * i) for i, w in enumerate(
    "thirty forty fifty sixty seventy eighty ninety".split(), start=3)})
_NUMBER_WORDS.update({"hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
                      "half": "0.5", "dozen": "12"})
_NEGATIONS = frozenset(
    "not no never nothing none nobody nowhere neither nor without cannot cant dont doesnt didnt isnt "
    "wasnt arent werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt".split())


class Verifier(Protocol):
    def consistent(self, query: str, cached: str) -> bool:
        """False when serving `cached`'s answer for `query` is known to be wrong."""
        ...


def numbers(text: str) -> frozenset[str]:
    """Numbers in a text, digits or common number words, normalised ("1,000" -> "1000")."""
    found = set()
    for match in _NUMBER.findall(text):
        value = match.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", match) else match
        found.add(value.rstrip(".").lstrip("0") or "0")
    for word in _WORD.findall(text.lower()):
        if word in _NUMBER_WORDS:
            found.add(_NUMBER_WORDS[word])
    return frozenset(found)


def negated(text: str) -> bool:
    lowered = text.lower()
    if "n't" in lowered or "n’t" in lowered:
        return True
    return any(word.replace("'", "") in _NEGATIONS for word in _WORD.findall(lowered))


def entities(text: str) -> frozenset[str]:
    """Capitalised words that do not start a sentence, lower-cased (a crude named-entity cue)."""
    found = set()
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = _WORD.findall(sentence)
        for word in words[1:]:
            if word[0].isupper() and word != "I" and not word.isupper() or (word.isupper() and len(word) > 1):
                found.add(word.lower())
    return frozenset(found)


class GuardVerifier:
    """Vetoes on differing numbers and negation (and, when asked, entities)."""

    def __init__(self, *, check_numbers: bool = True, check_negation: bool = True,
                 check_entities: bool = False) -> None:
        self.check_numbers = check_numbers
        self.check_negation = check_negation
        self.check_entities = check_entities

    def consistent(self, query: str, cached: str) -> bool:
        if self.check_numbers and numbers(query) != numbers(cached):
            return False
        if self.check_negation and negated(query) != negated(cached):
            return False
        if self.check_entities:
            words_q = set(_WORD.findall(query.lower()))
            words_c = set(_WORD.findall(cached.lower()))
            if not entities(query) <= words_c or not entities(cached) <= words_q:
                return False
        return True

    def __repr__(self) -> str:
        on = [n for n, f in (("numbers", self.check_numbers), ("negation", self.check_negation),
                             ("entities", self.check_entities)) if f]
        return f"GuardVerifier({', '.join(on) or 'nothing'})"
