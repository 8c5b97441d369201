"""Tenants and secrets through a real gateway: feedback only from the tenant that got the answer;
no provider key, virtual key, admin key or upstream address in what a client is answered, in the
log or in the ledger; budget counters re-seeded from the ledger when Redis comes back empty.

The upstream that quotes the key is a small HTTP stub in this process answering as OpenAI's 401
does ("Incorrect API key provided: sk-abc***...xyz"); the unreachable upstream is a loopback port
nothing listens on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from tests.conftest import delete_redis_prefix, start_stack
from tests.ledger_util import wait_rows
from thrifty.budgets.backend import from_nano, to_nano
from thrifty.budgets.windows import window_bounds
from thrifty.cli.localstack import DEMO_KEY, OTHER_KEY
from thrifty.cli.processes import free_port
from thrifty.ledger import RowFilter, SQLiteLedger
from thrifty.redact import Redactor, install_log_redaction

STUB_KEY = "sk-proj-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
MASKED = STUB_KEY[:6] + "*" * 20 + "..." + STUB_KEY[-4:]  # OpenAI's form: sk-pro****...abcd
ADMIN = "adm-" + uuid.uuid4().hex
PLAIN_KEY = "tenant-three-" + uuid.uuid4().hex  # a virtual key of no recognisable shape


# --- a provider that quotes secrets back -------------------------------------------------------

class _QuotingUpstream(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        host, port = self.server.server_address[:2]
        # OpenAI's 401 quotes the key partly masked; a careless proxy quotes all of it, its own
        # address, and whatever else it was given.
        message = (f"Incorrect API key provided: {MASKED}. You can find your API key at "
                   f"https://platform.openai.com/account/api-keys. (got Bearer {STUB_KEY} at "
                   f"http://{host}:{port}/v1; keys seen: {PLAIN_KEY}, {ADMIN})")
        body = ('{"error": {"message": %s, "type": "invalid_request_error", "param": null, '
                '"code": "invalid_api_key"}}' % _json_str(message)).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet
        pass


def _json_str(s: str) -> str:
    import json

    return json.dumps(s)


@pytest.fixture(scope="module")
def quoting_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _QuotingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def secrets_stack(tmp_path_factory, quoting_upstream):
    dead_port = free_port()  # bound and released: nothing listens there

    def edit(cfg):
        cfg["admin"] = {"key": ADMIN}
        cfg["keys"][PLAIN_KEY] = {"tenant": "three"}
        cfg["providers"]["stub"] = {"kind": "openai", "api_key": STUB_KEY, "timeout_s": 5,
                                    "base_url": f"http://127.0.0.1:{quoting_upstream}/v1"}
        cfg["providers"]["dead"] = {"kind": "openai", "api_key": STUB_KEY, "timeout_s": 5,
                                    "connect_timeout_s": 1, "base_url": f"http://127.0.0.1:{dead_port}/v1"}
        cfg["providers"]["stub-anthropic"] = {"kind": "anthropic", "api_key": STUB_KEY, "timeout_s": 5,
                                              "base_url": f"http://127.0.0.1:{quoting_upstream}"}
        cfg["deployments"]["stub-4o-mini"] = {"provider": "stub", "model": "gpt-4o-mini", "tier": "stub-only"}
        cfg["deployments"]["stub-haiku"] = {"provider": "stub-anthropic", "model": "claude-haiku-4-5",
                                            "tier": "stub-a-only"}
        cfg["deployments"]["dead-4o-mini"] = {"provider": "dead", "model": "gpt-4o-mini", "tier": "dead-only"}

    s = start_stack(tmp_path_factory.mktemp("secrets"), edit=edit)
    s.dead_port = dead_port
    s.stub_port = quoting_upstream
    yield s
    s.gateway.stop()
    s.emulator.stop()


def _secrets(stack) -> list[str]:
    return [STUB_KEY, MASKED, STUB_KEY[-12:], ADMIN, PLAIN_KEY, DEMO_KEY, OTHER_KEY]


def _assert_clean(text: str, stack, *, addresses: bool = True) -> None:
    for secret in _secrets(stack):
        assert secret not in text, f"{secret!r} leaked: {text}"
    if addresses:
        for port in (stack.stub_port, stack.dead_port):
            assert f"127.0.0.1:{port}" not in text, text


def test_an_upstream_401_quoting_the_key_reaches_the_client_without_it(secrets_stack):
    s = secrets_stack
    msg = {"role": "user", "content": "hello"}
    ids = []
    for key in (DEMO_KEY, PLAIN_KEY):
        for stream in (False, True):
            r = httpx.post(f"{s.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "stub-4o-mini", "messages": [msg], "stream": stream}, timeout=30)
            # The gateway's provider key was refused, not the client's virtual key: a 502 that says so.
            assert r.status_code == 502, r.text
            err = r.json()["error"]
            assert err["message"].startswith("stub: Incorrect API key provided: [redacted]")
            assert err["code"] == "upstream_credentials_refused" and "gateway's credentials" in err["message"]
            assert "[upstream]" in err["message"]  # the upstream's own address is hidden too
            _assert_clean(r.text, s)
            ids.append(r.headers["x-thrifty-request-id"])
    for model in ("stub-4o-mini", "stub-haiku"):  # translated to the OpenAI wire, and Anthropic's own
        r = httpx.post(f"{s.url}/v1/messages", headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"},
                       json={"model": model, "max_tokens": 20, "messages": [msg]}, timeout=30)
        assert r.status_code == 502 and r.json()["type"] == "error", r.text
        assert "Incorrect API key provided: [redacted]" in r.json()["error"]["message"]
        _assert_clean(r.text, s)
        ids.append(r.headers["x-thrifty-request-id"])

    # The SDK's view: the same clean message.
    with openai.OpenAI(base_url=f"{s.url}/v1", api_key=DEMO_KEY, max_retries=0) as c:
        with pytest.raises(openai.InternalServerError) as exc:
            c.chat.completions.create(model="stub-4o-mini", messages=[msg])
    _assert_clean(str(exc.value), s)

    rows = wait_rows(s.ledger_path, ids)
    for row in rows.values():
        assert row.status == 502 and row.retries == 0  # the same key would be refused again
        _assert_clean(repr(dataclasses.asdict(row)), s)


def test_an_unreachable_upstream_is_named_but_not_located(secrets_stack):
    s = secrets_stack
    r = httpx.post(f"{s.url}/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEY}"},
                   json={"model": "dead-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, timeout=60)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["message"] == "upstream dead unreachable"
    _assert_clean(r.text, s)
    r = httpx.post(f"{s.url}/v1/messages", headers={"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"},
                   json={"model": "dead-4o-mini", "max_tokens": 20, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]}, timeout=60)
    assert r.status_code == 502 and r.json()["error"]["message"] == "upstream dead unreachable", r.text
    _assert_clean(r.text, s)
    # Where, and why, is in the operator's log, which holds no secret.
    log = _gateway_log(s, f"127.0.0.1:{s.dead_port}")
    assert "upstream dead at http://127.0.0.1:" in log and "unreachable" in log
    _assert_clean(log, s, addresses=False)


def _gateway_log(stack, wanted: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = open(stack.gateway.log_path, encoding="utf-8", errors="replace").read()
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


# --- the redactor itself and the log filter ------------------------------------------------------

def test_the_redactor_removes_keys_by_value_and_by_shape():
    r = Redactor(["emulator-key-123", ADMIN], ["http://10.0.0.7:8000/v1"])
    cases = {
        "Incorrect API key provided: sk-abc***...xyz.": "Incorrect API key provided: [redacted]",
        "Incorrect API key provided: sk*****.": "Incorrect API key provided: [redacted]",
        "Incorrect API key provided: emulator-key-123.": "Incorrect API key provided: [redacted].",
        "x-api-key: sk-ant-api03-AbCdEf_123-xyz was refused": "x-api-key: [redacted] was refused",
        "Authorization: Bearer eyJhbGciOi.J9.abc": "Authorization: Bearer [redacted]",
        f"admin {ADMIN} said no": "admin [redacted] said no",
        "redis://:hunter22@cache:6379/0 down": "redis://:[redacted]@cache:6379/0 down",
        "model 'gpt-4o' task-7 disk-usage": "model 'gpt-4o' task-7 disk-usage",  # nothing to hide
    }
    for text, clean in cases.items():
        assert r.secrets(text) == clean, text
    # Addresses are hidden from clients only: the operator's log keeps them.
    assert r.secrets("connect to 10.0.0.7:8000 failed") == "connect to 10.0.0.7:8000 failed"
    assert r.for_client("connect to 10.0.0.7:8000 failed") == "connect to [upstream] failed"
    assert r.for_client("POST http://10.0.0.7:8000/v1/chat/completions") == "POST [upstream]/chat/completions"
    assert r.for_client("at 127.0.0.1:5432 and localhost:6379") == "at [upstream] and [upstream]"


def test_log_records_are_scrubbed_messages_arguments_and_tracebacks(caplog):
    previous = logging.getLogRecordFactory()
    install_log_redaction(Redactor([ADMIN]))
    try:
        log = logging.getLogger("thrifty.later." + uuid.uuid4().hex[:8])  # made after: covered too
        with caplog.at_level(logging.INFO, "thrifty"):
            log.warning("upstream said: Incorrect API key provided: %s (admin %s)", "sk-abc***...xyz", ADMIN)
            try:
                raise ValueError(f"bad key {STUB_KEY}")
            except ValueError:
                logging.getLogger("thrifty.api").exception("unhandled error in request %s", "thr_1")
            logging.getLogger("elsewhere").warning("not ours: %s", ADMIN)
    finally:
        logging.setLogRecordFactory(previous)
    assert "Incorrect API key provided: [redacted] (admin [redacted])" in caplog.text
    assert "bad key [redacted]" in caplog.text and "unhandled error in request thr_1" in caplog.text
    assert STUB_KEY not in caplog.text and "sk-abc" not in caplog.text
    assert caplog.text.count(ADMIN) == 1  # only in the record of a logger that is not Thrifty's


# --- feedback only from the tenant that received the answer ---------------------------------------

@pytest.fixture(scope="module")
def faq_stack(tmp_path_factory):
    from thrifty.cache.semantic import model_available

    missing = model_available()
    if missing:
        pytest.skip(missing)

    def edit(cfg):
        cfg["levers"] = {"semantic_cache": {"enabled": True}}
        cfg["routes"] = [{"name": "faq", "match": {"feature": "faq"}, "semantic_cache": True}]

    s = start_stack(tmp_path_factory.mktemp("tenant-feedback"), edit=edit)
    yield s
    s.gateway.stop()
    s.emulator.stop()


def _ask(stack, key: str, question: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key}", "x-thrifty-feature": "faq"},
                      json={"model": "gpt-4o-mini", "messages": [
                          {"role": "system", "content": "You are the help desk of Northwind Bank."},
                          {"role": "user", "content": question}]})


def _feedback(stack, key: str, request_id: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/thrifty/feedback", headers={"authorization": f"Bearer {key}"},
                      json={"request_id": request_id, "bad": True}, timeout=30)


def test_another_tenant_cannot_evict_an_answer_nor_tell_it_exists(faq_stack):
    s = faq_stack
    assert _ask(s, DEMO_KEY, "How do I order a new debit card?").headers["x-thrifty-cache"] == "miss"
    hit = _ask(s, DEMO_KEY, "How can I order a new debit card?")
    assert hit.headers["x-thrifty-cache"] == "semantic"
    rid = hit.headers["x-thrifty-request-id"]

    foreign = _feedback(s, OTHER_KEY, rid)
    unknown = _feedback(s, OTHER_KEY, "thr_" + uuid.uuid4().hex[:24])
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()  # the same answer: the id's existence is not revealed
    assert foreign.json()["error"]["param"] == "request_id"

    # The entry is still there for its own tenant, who can evict it.
    assert _ask(s, DEMO_KEY, "How can I order a new debit card?").headers["x-thrifty-cache"] == "semantic"
    own = _feedback(s, DEMO_KEY, rid)
    assert own.status_code == 200 and own.json()["evicted"] is True
    assert _ask(s, DEMO_KEY, "How can I order a new debit card?").headers["x-thrifty-cache"] == "miss"


# --- budgets re-seeded from the ledger when Redis comes back empty --------------------------------

@pytest.fixture(scope="module")
def budget_stack(tmp_path_factory, redis_url):
    prefix = f"thrifty-test:reseed:{uuid.uuid4().hex}:"

    def edit(cfg):
        cfg["admin"] = {"key": ADMIN}
        cfg["budgets"] = {
            "budgets": [{"name": "tenant-day", "scope": "tenant", "limit_usd": 1.0, "window": "day"},
                        {"name": "other-day", "scope": "tenant", "match": "other", "limit_usd": 0.00004,
                         "window": "day"}],
            "backend": {"kind": "redis", "redis_url": redis_url, "key_prefix": prefix}}

    s = start_stack(tmp_path_factory.mktemp("reseed"), edit=edit)
    s.redis_url, s.prefix = redis_url, prefix
    yield s
    s.gateway.stop()
    s.emulator.stop()
    delete_redis_prefix(redis_url, prefix)


def _chat(stack, key: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "max_tokens": 16,
                            "messages": [{"role": "user", "content": f"say hi {uuid.uuid4().hex}"}]}, timeout=30)


def _spent(stack, tenant: str) -> dict[str, Decimal]:
    r = httpx.get(f"{stack.url}/admin/spend", params={"scope": "tenant", "value": tenant},
                  headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert r.status_code == 200, r.text
    return {b["budget"]: Decimal(str(b["spent_usd"])) for b in r.json()["budgets"]}


def _ledger_usd(stack, tenant: str) -> Decimal:
    start, end = window_bounds("day", time.time())
    totals = SQLiteLedger(str(stack.ledger_path)).totals(
        "tenant", RowFilter(tenant=tenant, since=float(start), until=float(end)))
    return from_nano(to_nano(sum((t["cost_usd"] for t in totals), Decimal(0))))


def test_spend_survives_a_redis_that_comes_back_empty(budget_stack):
    s = budget_stack
    ids = []
    for _ in range(3):
        r = _chat(s, DEMO_KEY)
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-thrifty-request-id"])
    refused = None
    for _ in range(30):  # spend the other tenant's small budget until it refuses
        r = _chat(s, OTHER_KEY)
        ids.append(r.headers["x-thrifty-request-id"])
        if r.status_code == 429:
            refused = r
            break
        assert r.status_code == 200, r.text
    assert refused is not None and refused.json()["error"]["code"] == "budget_exceeded"
    wait_rows(s.ledger_path, ids)
    before = _spent(s, "demo")["tenant-day"]
    assert before == _ledger_usd(s, "demo") > 0

    delete_redis_prefix(s.redis_url, s.prefix)  # Redis restarted without persistence

    assert _spent(s, "demo")["tenant-day"] == before == _ledger_usd(s, "demo")
    other = _spent(s, "other")
    assert other["other-day"] == _ledger_usd(s, "other")
    r = _chat(s, OTHER_KEY)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded", r.text  # still exhausted
    r = _chat(s, DEMO_KEY)
    assert r.status_code == 200, r.text
    wait_rows(s.ledger_path, [r.headers["x-thrifty-request-id"]])
    assert _spent(s, "demo")["tenant-day"] == _ledger_usd(s, "demo") > before
