"""The gateway's provider batch clients (thrifty.providers.batches) against a real emulator over HTTP:
submit, poll until done, stream results (a failed line included), cancel, and finding a submission
whose batch id was never recorded (the lane crashed between submit and its write)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from thrifty.cli import processes
from thrifty.config import ProviderConfig
from thrifty.errors import NotFound, UpstreamCredentialsRefused
from thrifty.providers.anthropic import AnthropicProvider
from thrifty.providers.azure import AzureOpenAIProvider
from thrifty.providers.base import Provider
from thrifty.providers.batches import (
    AnthropicBatches,
    BatchAmbiguous,
    BatchAPI,
    BatchLine,
    OpenAIBatches,
    batch_api,
)
from thrifty.providers.gemini import GeminiProvider
from thrifty.providers.openai import OpenAIProvider
from thrifty_emulator.batch_jobs import BATCH_FAULT_MARKER


def _emulator(tmp: Path, **config: float) -> processes.Server:
    path = tmp / "emulator.json"
    path.write_text(json.dumps(config))
    return processes.start_emulator(extra=["--config", str(path)])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    emu = _emulator(tmp_path_factory.mktemp("quick"), batch_seconds=0.2)
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """Batches take 20 s, validating for the first 2: a cancel right after submit runs nothing."""
    emu = _emulator(tmp_path_factory.mktemp("slow"), batch_seconds=20)
    yield emu
    emu.stop()


_KINDS: dict[str, tuple[type[Provider], str]] = {"openai": (OpenAIProvider, "/v1"), "anthropic": (AnthropicProvider, "")}


@asynccontextmanager
async def _api(emu: processes.Server, kind: str, api_key: str = "emulator-key") -> AsyncIterator[BatchAPI]:
    cls, suffix = _KINDS[kind]
    provider = cls(kind, ProviderConfig(kind=kind, base_url=emu.url + suffix, api_key=api_key, timeout_s=10))
    await provider.start()
    try:
        api = batch_api(provider)
        assert api is not None
        yield api
    finally:
        await provider.close()


def _line(kind: str, custom_id: str, content: str = "Summarise our refund policy.", **extra: Any) -> BatchLine:
    model = "gpt-4o-mini" if kind == "openai" else "claude-haiku-4-5"
    return BatchLine(custom_id, {"model": model, "max_tokens": 40,
                                 "messages": [{"role": "user", "content": content}], **extra})


async def _until_done(api: BatchAPI, batch_id: str):
    deadline = time.monotonic() + 20
    while True:
        status = await api.poll(batch_id)
        if status.done:
            return status
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def _results(api: BatchAPI, batch_id: str) -> dict[str, Any]:
    return {r.custom_id: r async for r in api.results(batch_id)}


def test_batch_api_exists_for_openai_and_anthropic_kinds_only():
    def provider(cls: type[Provider], kind: str) -> Provider:
        return cls(kind, ProviderConfig(kind=kind, base_url="http://127.0.0.1:9/v1", api_key="k"))

    assert isinstance(batch_api(provider(OpenAIProvider, "openai")), OpenAIBatches)
    assert isinstance(batch_api(provider(AnthropicProvider, "anthropic")), AnthropicBatches)
    assert batch_api(provider(AzureOpenAIProvider, "azure")) is None
    assert batch_api(provider(GeminiProvider, "gemini")) is None
    assert (OpenAIBatches.max_lines, OpenAIBatches.max_bytes) == (50_000, 200 * 1024 * 1024)
    assert (AnthropicBatches.max_lines, AnthropicBatches.max_bytes) == (100_000, 256 * 1024 * 1024)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_submit_poll_and_results_with_failed_lines(quick, kind):
    async with _api(quick, kind) as api:
        lines = [_line(kind, "ok-1"), _line(kind, "ok-2", "Name three carriers."),
                 _line(kind, "too-long", max_tokens=10**6), _line(kind, "fault", f"Hi {BATCH_FAULT_MARKER}")]
        batch_id = await api.submit(lines, submission_id="sub-results", endpoint="/v1/chat/completions")
        first = await api.poll(batch_id)
        assert first.id == batch_id and not first.done
        done = await _until_done(api, batch_id)
        assert done.status == ("completed" if kind == "openai" else "ended")
        expected_counts = ({"total": 4, "completed": 2, "failed": 2} if kind == "openai" else
                           {"processing": 0, "succeeded": 2, "errored": 2, "canceled": 0, "expired": 0})
        assert done.counts == expected_counts
        results = await _results(api, batch_id)
    assert sorted(results) == ["fault", "ok-1", "ok-2", "too-long"]
    for ok in ("ok-1", "ok-2"):
        r = results[ok]
        assert (r.outcome, r.status_code, r.error) == ("succeeded", 200, None)
        assert "usage" in r.body and ("choices" in r.body if kind == "openai" else r.body["type"] == "message")
    too_long, fault = results["too-long"], results["fault"]
    assert (too_long.outcome, too_long.status_code, too_long.body) == ("errored", 400, None)
    assert "max_tokens" in too_long.error["message"]
    assert (fault.outcome, fault.status_code) == ("errored", 500)
    assert fault.error["type"] == ("server_error" if kind == "openai" else "api_error")


async def test_openai_embeddings_results_stream_lines_longer_than_a_read(quick):
    async with _api(quick, "openai") as api:
        lines = [BatchLine(f"e{i}", {"model": "text-embedding-3-small", "input": [f"text {i}-{j}" for j in range(4)]})
                 for i in range(3)]
        batch_id = await api.submit(lines, submission_id="sub-embed", endpoint="/v1/embeddings")
        await _until_done(api, batch_id)
        results = await _results(api, batch_id)
    assert sorted(results) == ["e0", "e1", "e2"]
    for r in results.values():  # each line is ~100 KB of floats: longer than one 64 KB read
        assert r.outcome == "succeeded" and [len(d["embedding"]) for d in r.body["data"]] == [1536] * 4


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_cancel_ends_lines_not_run_as_cancelled(slow, kind):
    async with _api(slow, kind) as api:
        batch_id = await api.submit([_line(kind, "a"), _line(kind, "b")], submission_id="sub-cancel",
                                    endpoint="/v1/chat/completions")
        cancelling = await api.cancel(batch_id)
        assert not cancelling.done and cancelling.status == ("cancelling" if kind == "openai" else "canceling")
        done = await _until_done(api, batch_id)
        assert done.status == ("cancelled" if kind == "openai" else "ended")
        results = await _results(api, batch_id)
        assert {c: (r.outcome, r.body) for c, r in results.items()} == {"a": ("cancelled", None),
                                                                        "b": ("cancelled", None)}
        again = await api.cancel(batch_id)  # already done: answered with its status, not an error
        assert again.done and again.status == done.status


async def test_openai_find_by_submission_metadata_across_pages(quick):
    async with _api(quick, "openai") as api:
        since = time.time()
        target = await api.submit([_line("openai", "a"), _line("openai", "b")], submission_id="sub-find",
                                  endpoint="/v1/chat/completions")
        for i in range(101):  # the target is now on the second page of the newest-first listing
            await api.submit([_line("openai", "x")], submission_id=f"other-{i}", endpoint="/v1/chat/completions")
        assert await api.find("sub-find", since=since, line_count=2, exclude=()) == target
        assert await api.find("sub-never", since=since, line_count=2, exclude=()) is None
        assert await api.find("sub-find", since=since, line_count=2, exclude={target}) is None
        assert await api.find("sub-find", since=time.time() + 3600, line_count=2, exclude=()) is None


async def test_anthropic_find_by_time_and_size_and_the_ambiguous_case(quick):
    async with _api(quick, "anthropic") as api:
        since = time.time()
        first = await api.submit([_line("anthropic", f"r{i}") for i in range(7)], submission_id="sub-a",
                                 endpoint="/v1/chat/completions")
        for i in range(101):  # pages: the first batch is on the second page
            await api.submit([_line("anthropic", "x")], submission_id=f"other-{i}", endpoint="/v1/chat/completions")
        assert await api.find("sub-a", since=since, line_count=7, exclude=()) == first
        assert await api.find("sub-a", since=since, line_count=8, exclude=()) is None
        assert await api.find("sub-a", since=time.time() + 3600, line_count=7, exclude=()) is None
        second = await api.submit([_line("anthropic", f"s{i}") for i in range(7)], submission_id="sub-b",
                                  endpoint="/v1/chat/completions")
        with pytest.raises(BatchAmbiguous) as caught:
            await api.find("sub-b", since=since, line_count=7, exclude=())
        assert set(caught.value.batch_ids) == {first, second}
        assert await api.find("sub-b", since=since, line_count=7, exclude={first}) == second


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_errors_are_translated_at_the_boundary(quick, kind):
    async with _api(quick, kind, api_key="sk-not-the-emulator-key") as api:
        with pytest.raises(UpstreamCredentialsRefused) as refused:
            await api.submit([_line(kind, "a")], submission_id="s", endpoint="/v1/chat/completions")
        assert "sk-not-the-emulator-key" not in refused.value.message
    async with _api(quick, kind) as api:
        with pytest.raises(NotFound):
            await api.poll("batch_missing" if kind == "openai" else "msgbatch_missing")
        with pytest.raises(ValueError):
            await api.submit([], submission_id="s", endpoint="/v1/chat/completions")
