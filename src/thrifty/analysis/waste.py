"""Calls that should never have been made, or cost more than they had to: the waste findings.

Each finding is one function over the analysed relation that returns `{calls, usd, available,
...detail}`; `usd` is money a fix would have kept in the bank (Decimal), never the spend of the
calls involved unless all of it was avoidable. A finding whose columns the source lacks (no
request hash, no status, no text) is `available: false` with the reason, never a zero that reads
like a clean bill. What each finding means and what to do about it lives in `FINDINGS`, the one
text the terminal report and the HTML report both show.

Duplicates and retries are window functions in DuckDB. Near-duplicates are the exception: they
need embeddings, so a bounded random sample of calls (each with the few calls before it) is
embedded with the gateway's own MiniLM embedder and what the sample shows is scaled, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, Sequence

from thrifty.analysis.profile import MILLION, ZERO
from thrifty.pricing import PriceCard

PRICE_TABLE = "analysis_prices"
# Provider prompt caches match whole blocks and start at 1,024 tokens (OpenAI's automatic cache
# and Anthropic's minimum for most models); prefix_hashes blocks are 512 tokens (schema.py).
MIN_CACHEABLE_TOKENS = 1024
BLOCK_TOKENS = 512
CACHE_TTL_S = 300  # both providers keep a prefix about 5 minutes after its last use
CHARS_PER_TOKEN = 4  # for a system prompt's length when only its text is known
TOP_EXAMPLES = 5  # the costliest repeated requests listed, for a person to go and look at


@dataclass(frozen=True)
class Finding:
    title: str
    meaning: str
    action: str


FINDINGS: dict[str, Finding] = {
    "exact_duplicates": Finding(
        "Identical requests answered again",
        "The same request (same normalised body, same tenant) was sent and paid for again after an earlier "
        "copy had already been answered. The usd is what the repeats cost.",
        "Turn on the exact response cache (levers.exact_cache); it serves repeats for free. Where the "
        "repeats come from one code path (a page that re-generates on every load), fix it there."),
    "near_duplicates": Finding(
        "Near-identical prompts (sampled)",
        "Prompts that say the same thing in other words (cosine similarity above the semantic cache's "
        "conservative operating point), to the same model with the same system prompt. Measured on a "
        "random sample of calls, each compared with the few calls before it, and scaled up: an estimate, "
        "and a low one, since paraphrases of older calls are missed.",
        "Calibrate the semantic cache on your own labelled pairs (thrifty eval cache) and turn it on for "
        "the features where these cluster."),
    "retry_storms": Finding(
        "Retry storms",
        "The same request re-sent within seconds of a failed attempt. Each re-send is billed when it "
        "succeeds and adds load when the provider is already struggling.",
        "Retry with exponential backoff and jitter, never on 4xx errors, with a cap on attempts (the "
        "gateway's reliability policy does this once clients stop retrying on their own)."),
    "oversized_max_tokens": Finding(
        "Output caps far above the output",
        "max_tokens was at least 4x the output actually produced (and above 256). A cap costs nothing "
        "by itself, so usd is 0: the cost is that budgets and rate limits reserve the worst case "
        "(reserved_headroom_usd), which refuses or delays calls that would have fitted.",
        "Set max_tokens from the output these call sites really produce (a high percentile), or let the "
        "shaper's output caps do it per feature."),
    "uncached_prefixes": Finding(
        "Long repeated prefixes not read from a provider cache",
        "A prompt prefix of 1,024 tokens or more (the same leading prefix blocks, or the same long "
        "system prompt) was sent again within 5 minutes to the same model and none of it was read from "
        "the provider's prompt cache. The usd is what cache reads would have saved (input price minus "
        "cache-read price on the repeated prefix), before the write premium the first call of a run pays "
        "(25% of input on Anthropic, none on OpenAI).",
        "Put the stable part (system prompt, tools, documents) first and the variable part last; on "
        "Anthropic add cache_control breakpoints (the shaper places them), on OpenAI keep the prefix "
        "byte-identical and set prompt_cache_key."),
    "streams_to_buffer": Finding(
        "Streams read into a buffer",
        "The client asked for a stream, but the backend that consumed it waited for the whole answer. "
        "Streaming costs no extra tokens (usd is 0), but it rules out the batch lane and response "
        "caching on some gateways, and holds a connection open for nothing.",
        "Ask for a non-streamed answer there; where nobody waits for it, send it through the batch "
        "lane at half price."),
    "unread_generations": Finding(
        "Generations nobody read",
        "Answers generated and paid for that the application never showed or used (for example a "
        "background summary of a page the user had already left). All of their cost is avoidable.",
        "Generate on demand, or cancel the call when its reader goes away."),
}


class Embedder(Protocol):
    def embed_batch(self, texts: Sequence[str]) -> Any: ...


def _unavailable(reason: str, **detail: Any) -> dict[str, Any]:
    return {"available": False, "reason": reason, "calls": 0, "usd": ZERO, **detail}


def _count(con: Any, rel: str, condition: str) -> int:
    return con.execute(f"SELECT count(*) FROM {rel} WHERE {condition}").fetchone()[0]


def _price_table(con: Any, cards: dict[str, PriceCard | None]) -> None:
    """The cards the SQL below joins on: model -> input, cache-read and output USD per 1M tokens."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {PRICE_TABLE} (model VARCHAR, input DECIMAL(38, 12), "
                f"cache_read DECIMAL(38, 12), output DECIMAL(38, 12))")
    rows = [(m, c.input, c.cache_read, c.output) for m, c in cards.items() if c is not None]
    if rows:
        con.executemany(f"INSERT INTO {PRICE_TABLE} VALUES (?, ?, ?, ?)", rows)


_ORDER = "ORDER BY ts NULLS LAST, source_line NULLS LAST, id"


def exact_duplicates(con: Any, rel: str) -> dict[str, Any]:
    """Calls whose request (tenant + request_hash) had already been answered successfully.

    Repeats after failures only are retries (`retry_storms`), and calls a response cache already
    served cost nothing, so neither counts here: 3 identical successful calls are 2 duplicates.
    """
    if not _count(con, rel, "request_hash IS NOT NULL"):
        return _unavailable("the source has no request bodies to hash (request_hash is empty)")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE analysis_repeats AS
            WITH t AS (
              SELECT tenant, request_hash, cost_usd, call_site, feature, prompt_text,
                     sum(CASE WHEN status IS NULL OR status < 400 THEN 1 ELSE 0 END) OVER (
                       PARTITION BY tenant, request_hash {_ORDER}
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS answered_before
              FROM {rel}
              WHERE request_hash IS NOT NULL AND (cache IS NULL OR cache NOT IN ('exact', 'semantic')))
            SELECT tenant, request_hash, count(*) AS repeats, coalesce(sum(cost_usd), 0) AS usd,
                   any_value(call_site) AS call_site, any_value(feature) AS feature,
                   any_value(left(prompt_text, 120)) AS prompt
            FROM t WHERE answered_before > 0 GROUP BY 1, 2""")
    calls, usd, requests = con.execute(
        "SELECT coalesce(sum(repeats), 0), coalesce(sum(usd), 0), count(*) FROM analysis_repeats").fetchone()
    top = con.execute(
        f"SELECT tenant, request_hash, repeats, usd, call_site, feature, prompt FROM analysis_repeats "
        f"ORDER BY usd DESC, repeats DESC, request_hash LIMIT {TOP_EXAMPLES}").fetchall()
    con.execute("DROP TABLE analysis_repeats")
    return {"available": True, "calls": int(calls), "usd": usd, "distinct_requests": requests,
            "top": [{"tenant": t, "request_hash": h, "repeats": n, "usd": u, "call_site": site,
                     "feature": feature, "prompt_preview": prompt}
                    for t, h, n, u, site, feature, prompt in top]}


def retry_storms(con: Any, rel: str, *, window_s: float = 30.0) -> dict[str, Any]:
    """Calls re-sending a request (tenant + request_hash) within `window_s` of a failed attempt."""
    if not _count(con, rel, "request_hash IS NOT NULL"):
        return _unavailable("the source has no request bodies to hash (request_hash is empty)")
    if not _count(con, rel, "status IS NOT NULL OR error IS NOT NULL"):
        return _unavailable("the source records no call status or error")
    calls, usd, requests, failed = con.execute(
        f"""WITH t AS (
              SELECT tenant, request_hash, cost_usd, ts, status >= 400 OR error IS NOT NULL AS failed,
                     lag(ts) OVER w AS prev_ts,
                     lag(coalesce(status >= 400 OR error IS NOT NULL, false)) OVER w AS prev_failed
              FROM {rel} WHERE request_hash IS NOT NULL AND ts IS NOT NULL
              WINDOW w AS (PARTITION BY tenant, request_hash {_ORDER}))
            SELECT count(*), coalesce(sum(cost_usd), 0), count(DISTINCT (tenant, request_hash)),
                   count(*) FILTER (WHERE failed)
            FROM t WHERE prev_failed AND ts - prev_ts <= {float(window_s)!r}""").fetchone()
    return {"available": True, "calls": calls, "usd": usd, "requests": requests,
            "retries_that_failed_again": failed, "window_s": window_s}


def oversized_max_tokens(con: Any, rel: str) -> dict[str, Any]:
    """Calls whose max_tokens was >= 4x their output and > 256: a budget cost, not a token cost."""
    if not _count(con, rel, "max_tokens IS NOT NULL AND output_tokens IS NOT NULL"):
        return _unavailable("the source does not record the requests' max_tokens")
    calls, reserved, used, headroom_usd = con.execute(
        f"""SELECT count(*), coalesce(sum(t.max_tokens), 0), coalesce(sum(t.output_tokens), 0),
                   coalesce(sum((t.max_tokens - t.output_tokens) * p.output), 0)
            FROM {rel} t LEFT JOIN {PRICE_TABLE} p ON p.model = t.model
            WHERE t.max_tokens IS NOT NULL AND t.output_tokens IS NOT NULL
              AND t.max_tokens > 256 AND t.max_tokens >= 4 * t.output_tokens""").fetchone()
    return {"available": True, "calls": calls, "usd": ZERO, "reserved_output_tokens": int(reserved),
            "used_output_tokens": int(used), "headroom_tokens": int(reserved - used),
            "reserved_headroom_usd": headroom_usd / MILLION}


def uncached_prefixes(con: Any, rel: str) -> dict[str, Any]:
    """Calls repeating a long prefix of the same tenant and model within 5 minutes, no cache read.

    The prefix is the first two 512-token blocks of `prefix_hashes` (the reusable part is then the
    blocks shared with the previous such call), else a system prompt of >= 1,024 tokens by its
    length (4 characters a token, so estimated). A call whose cached_tokens is unknown is counted
    as uncached and reported apart (`calls_cache_unknown`).
    """
    if not _count(con, rel, f"len(prefix_hashes) >= 2 OR length(system_text) >= "
                            f"{MIN_CACHEABLE_TOKENS * CHARS_PER_TOKEN}"):
        return _unavailable("the source has neither prefix hashes nor system prompts of 1,024+ tokens")
    calls, unknown, tokens, usd, unpriced = con.execute(
        f"""WITH k AS (
              SELECT tenant, model, ts, source_line, id, input_tokens, cached_tokens, prefix_hashes,
                     system_text,
                     CASE WHEN len(prefix_hashes) >= 2
                          THEN 'p:' || array_to_string(list_slice(prefix_hashes, 1, 2), ',')
                          WHEN length(system_text) >= {MIN_CACHEABLE_TOKENS * CHARS_PER_TOKEN}
                          THEN 's:' || md5(system_text) END AS pkey
              FROM {rel} WHERE ts IS NOT NULL),
            s AS (
              SELECT *, lag(ts) OVER w AS prev_ts, lag(prefix_hashes) OVER w AS prev_hashes
              FROM k WHERE pkey IS NOT NULL
              WINDOW w AS (PARTITION BY tenant, model, pkey {_ORDER})),
            r AS (
              SELECT model, cached_tokens,
                     least(coalesce(input_tokens, 0), CASE
                       WHEN pkey LIKE 'p:%' THEN {BLOCK_TOKENS} * coalesce(
                         list_position(list_transform(range(1, least(len(prefix_hashes), len(prev_hashes)) + 1),
                                                      lambda i: prefix_hashes[i] = prev_hashes[i]), false) - 1,
                         least(len(prefix_hashes), len(prev_hashes)))
                       ELSE length(system_text) // {CHARS_PER_TOKEN} END) AS reusable
              FROM s WHERE prev_ts IS NOT NULL AND ts - prev_ts <= {CACHE_TTL_S}
                AND coalesce(cached_tokens, 0) = 0)
            SELECT count(*), count(*) FILTER (WHERE r.cached_tokens IS NULL), coalesce(sum(reusable), 0),
                   coalesce(sum(reusable * (p.input - coalesce(p.cache_read, p.input))), 0),
                   count(*) FILTER (WHERE p.model IS NULL)
            FROM r LEFT JOIN {PRICE_TABLE} p ON p.model = r.model
            WHERE reusable >= {MIN_CACHEABLE_TOKENS}""").fetchone()
    return {"available": True, "calls": calls, "usd": usd / MILLION, "estimated": True,
            "reusable_tokens": int(tokens), "calls_cache_unknown": unknown, "calls_unpriced": unpriced}


def streams_to_buffer(con: Any, rel: str) -> dict[str, Any]:
    if not _count(con, rel, "streamed_to_buffer IS NOT NULL"):
        return _unavailable("the source does not say whether streams were consumed by a buffering backend")
    calls, spend = con.execute(
        f"SELECT count(*), coalesce(sum(cost_usd), 0) FROM {rel} WHERE streamed_to_buffer").fetchone()
    return {"available": True, "calls": calls, "usd": ZERO, "spend_usd": spend}


def unread_generations(con: Any, rel: str) -> dict[str, Any]:
    if not _count(con, rel, "read IS NOT NULL"):
        return _unavailable("the source does not say whether answers were read")
    calls, usd = con.execute(
        f"SELECT count(*), coalesce(sum(cost_usd), 0) FROM {rel} WHERE NOT read").fetchone()
    return {"available": True, "calls": calls, "usd": usd}


NEAR_LOOKBACK = 4  # earlier calls of the same context each sampled call is compared with


def near_duplicates(con: Any, rel: str, *, embedder: Embedder | None = None, sample: int = 1000,
                    threshold: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Calls whose prompt paraphrases an earlier one of the same context (model + system prompt).

    A call counts when an earlier call of its context is above `threshold` in cosine (default:
    the semantic cache's general operating point, deliberately conservative) with a different
    text (identical texts are the exact duplicates' business). At most `sample` prompts are
    embedded: when there are more, a random sample of anchor calls is each compared with the
    `NEAR_LOOKBACK` calls before it in its context, and the share of anchors that paraphrase one
    of them is scaled to the population. Paraphrases of older calls are missed, so the estimate
    is a low one; sampling random single calls instead would miss almost every pair.
    """
    from thrifty.cache.semantic.decision import GENERAL_OPERATING_POINT

    threshold = float(GENERAL_OPERATING_POINT["threshold"]) if threshold is None else threshold
    population = _count(con, rel, "prompt_text IS NOT NULL")
    if not population:
        return _unavailable("the source has no prompt text")
    if sample <= 0:
        return _unavailable("turned off (--near-sample 0)", population=population)
    if embedder is None:
        from thrifty.cache.semantic import OnnxEmbedder, model_available

        if (reason := model_available()) is not None:
            return _unavailable(reason, population=population)
        embedder = OnnxEmbedder()
    numbered = (f"SELECT model, md5(system_text) AS sys, prompt_text, cost_usd, row_number() OVER "
                f"(PARTITION BY model, md5(system_text) {_ORDER}) AS n FROM {rel} WHERE prompt_text IS NOT NULL")
    if population <= sample:
        rows = con.execute(f"SELECT model, sys, n, n, prompt_text, cost_usd FROM ({numbered})").fetchall()
        lookback, anchors = None, population
    else:
        anchors = max(sample // (NEAR_LOOKBACK + 1), 1)
        rows = con.execute(
            f"""WITH g AS ({numbered}),
                a AS (SELECT model, sys, n FROM g USING SAMPLE reservoir({anchors} ROWS) REPEATABLE ({int(seed)}))
                SELECT g.model, g.sys, a.n, g.n, g.prompt_text, g.cost_usd FROM a JOIN g
                  ON g.model IS NOT DISTINCT FROM a.model AND g.sys IS NOT DISTINCT FROM a.sys
                 AND g.n BETWEEN a.n - {NEAR_LOOKBACK} AND a.n""").fetchall()
        lookback = NEAR_LOOKBACK
    found, usd = _paraphrases(rows, embedder, threshold, lookback)
    scale = Decimal(population) / Decimal(anchors)
    return {"available": True, "calls": int(round(found * scale)), "usd": usd * scale, "estimated": True,
            "sampled": lookback is not None, "sample_size": anchors, "population": population,
            "found_in_sample": found, "lookback_calls": lookback, "threshold": threshold}


def _paraphrases(rows: list[tuple], embedder: Embedder, threshold: float,
                 lookback: int | None) -> tuple[int, Decimal]:
    """Count (and sum the cost of) the anchors with an earlier paraphrase among their rows.

    `rows` are (model, sys, anchor n, n, text, cost); with `lookback` None every row is its own
    anchor and is compared with every earlier row of its context.
    """
    import numpy as np

    texts = list(dict.fromkeys(r[4] for r in rows))
    vectors = np.asarray(embedder.embed_batch(texts), dtype=np.float32)
    index = {t: i for i, t in enumerate(texts)}
    contexts: dict[tuple, list[tuple]] = {}
    for r in rows:
        contexts.setdefault(r[:2] if lookback is None else r[:3], []).append(r)
    found, usd = 0, ZERO
    for group in contexts.values():
        group.sort(key=lambda r: r[3])
        ids = np.array([index[r[4]] for r in group])
        close = (vectors[ids] @ vectors[ids].T >= threshold) & (ids[:, None] != ids[None, :])
        for i, r in enumerate(group):
            if lookback is not None and r[3] != r[2]:
                continue  # a predecessor, not the anchor
            if close[i, :i].any():
                found += 1
                usd += r[5] or ZERO
    return found, usd


def find_waste(con: Any, rel: str, cards: dict[str, PriceCard | None], *, embedder: Embedder | None = None,
               near_sample: int = 1000, near_threshold: float | None = None,
               retry_window_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """Every finding, keyed as in `FINDINGS` (the `waste` object of `analyze --json`)."""
    _price_table(con, cards)
    return {
        "exact_duplicates": exact_duplicates(con, rel),
        "near_duplicates": near_duplicates(con, rel, embedder=embedder, sample=near_sample,
                                           threshold=near_threshold),
        "retry_storms": retry_storms(con, rel, window_s=retry_window_s),
        "oversized_max_tokens": oversized_max_tokens(con, rel),
        "uncached_prefixes": uncached_prefixes(con, rel),
        "streams_to_buffer": streams_to_buffer(con, rel),
        "unread_generations": unread_generations(con, rel),
    }
