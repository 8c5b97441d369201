"""The stored entry's byte format: exact round trips, and every kind of damage rejected."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import orjson
import pytest

from thrifty.cache import CorruptEntry, Entry, decode_entry, encode_entry
from thrifty.contract.usage import Usage

KEY = "x1:" + "ab" * 32

COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris. ☀️", "refusal": None,
                                                   "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}}


def entry(**over):
    fields = dict(surface="openai", response=COMPLETION,
                  usage=Usage(input_tokens=12, cache_read_tokens=8, cache_write_5m_tokens=1, cache_write_1h_tokens=2,
                              output_tokens=3, reasoning_tokens=1),
                  cost_usd=Decimal("0.000012345678901234567890"), served_model="gpt-4o-mini-2024-07-18",
                  tier="small", created_at=1700000000.25, ttl_s=600)
    fields.update(over)
    return Entry(**fields)


def test_round_trip_is_exact():
    e = entry()
    assert decode_entry(encode_entry(e, KEY), KEY) == e


def test_unknown_cost_and_missing_metadata_round_trip():
    e = entry(cost_usd=None, served_model=None, tier=None)
    assert decode_entry(encode_entry(e, KEY), KEY) == e


def test_expiry():
    e = entry(created_at=100.0, ttl_s=10)
    assert e.expires_at == 110.0 and not e.expired(109.9) and e.expired(110.0)


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],  # truncated payload
    lambda b: b[:10],  # truncated header
    lambda b: b"",
    lambda b: b[:-5] + bytes([b[-5] ^ 0x01]) + b[-4:],  # one flipped bit in the payload
    lambda b: b[:6] + bytes([b[6] ^ 0xFF]) + b[7:],  # damaged checksum
    lambda b: b"XYZ" + b[3:],  # not our format
    lambda b: b[:3] + bytes([99]) + b[4:],  # a future format version
    lambda b: b + b"trailing",
    lambda b: orjson.dumps(COMPLETION),  # a bare answer, as an older writer might have stored it
])
def test_damaged_bytes_are_rejected(damage):
    with pytest.raises(CorruptEntry):
        decode_entry(damage(encode_entry(entry(), KEY)), KEY)


def test_an_entry_under_the_wrong_key_is_rejected():
    data = encode_entry(entry(), KEY)
    with pytest.raises(CorruptEntry, match="another key"):
        decode_entry(data, "x1:" + "cd" * 32)


def sealed(payload: bytes) -> bytes:
    """Bytes with a valid header and checksum around an arbitrary payload."""
    return b"TXC\x01" + hashlib.blake2b(payload, digest_size=16).digest() + payload


def good_doc(**over):
    doc = orjson.loads(encode_entry(entry(), KEY)[20:])
    doc.update(over)
    return doc


@pytest.mark.parametrize("payload", [
    b"not json",
    b"[1, 2, 3]",
    orjson.dumps({"key": KEY}),
    orjson.dumps(good_doc(usage={"input_tokens": 1})),
    orjson.dumps(good_doc(usage={**good_doc()["usage"], "output_tokens": "3"})),
    orjson.dumps(good_doc(cost_usd="a lot")),
    orjson.dumps(good_doc(cost_usd=1.5)),
    orjson.dumps(good_doc(response=["not", "an", "object"])),
    orjson.dumps(good_doc(ttl_s=True)),
    orjson.dumps(good_doc(surface=None)),
])
def test_well_sealed_but_malformed_payloads_are_rejected(payload):
    with pytest.raises(CorruptEntry):
        decode_entry(sealed(payload), KEY)
