"""A lane job as each client API shows it: OpenAI's batch object and output files, Anthropic's
message batch and results. Pure functions of a job, its line counts and its lines.

Sources: OpenAI API reference, "Batch" (object, statuses, output and error file lines);
Anthropic API reference, "Message Batches" (object, request_counts, results lines).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Iterable

from thrifty.batch.store import Job, Line

OUTPUT_PREFIX, ERRORS_PREFIX = "file-out-", "file-err-"


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _final(counts: dict[str, int]) -> int:
    return sum(counts.get(s, 0) for s in ("succeeded", "errored", "expired", "cancelled"))


# -- OpenAI ------------------------------------------------------------------------------------

def openai_status(job: Job, counts: dict[str, int]) -> str:
    if job.status == "in_progress":
        return "cancelling" if job.cancel_requested else "in_progress"
    if job.cancel_requested:
        return "cancelled"
    if counts.get("expired") and not counts.get("succeeded"):
        return "expired"
    return "completed"


def openai_batch(job: Job, counts: dict[str, int]) -> dict[str, Any]:
    status = openai_status(job, counts)
    total = sum(counts.values())
    ended = job.ended_at
    rejected = job.info.get("rejected") or []
    has_output = counts.get("succeeded", 0) > 0 and job.status == "ended"
    has_errors = total - counts.get("succeeded", 0) > 0 and job.status == "ended"
    return {
        "id": job.id, "object": "batch", "endpoint": job.endpoint,
        "errors": ({"object": "list", "data": rejected} if rejected else None),
        "input_file_id": job.input_file_id, "completion_window": "24h", "status": status,
        "output_file_id": OUTPUT_PREFIX + job.id if has_output else None,
        "error_file_id": ERRORS_PREFIX + job.id if has_errors else None,
        "created_at": int(job.created_at), "in_progress_at": int(job.created_at),
        "expires_at": int(job.expires_at),
        "finalizing_at": int(ended) if ended else None,
        "completed_at": int(ended) if ended and status == "completed" else None,
        "failed_at": None,
        "expired_at": int(ended) if ended and status == "expired" else None,
        "cancelling_at": int(job.info.get("cancelled_at") or 0) or None,
        "cancelled_at": int(ended) if ended and status == "cancelled" else None,
        "request_counts": {"total": total, "completed": counts.get("succeeded", 0),
                           "failed": _final(counts) - counts.get("succeeded", 0)},
        "metadata": job.info.get("metadata"),
    }


def openai_output_line(line: Line) -> dict[str, Any]:
    """One line of a job's output file (succeeded) or error file (anything else)."""
    r = line.result or {}
    if r.get("outcome") == "succeeded":
        return {"id": "batch_req_" + line.id, "custom_id": line.custom_id,
                "response": {"status_code": 200, "request_id": line.id, "body": r.get("body")}, "error": None}
    if r.get("outcome") in ("expired", "cancelled"):
        return {"id": "batch_req_" + line.id, "custom_id": line.custom_id, "response": None,
                "error": {"code": r.get("code"), "message": r.get("message")}}
    return {"id": "batch_req_" + line.id, "custom_id": line.custom_id,
            "response": {"status_code": r.get("status_code"), "request_id": line.id, "body": r.get("body")},
            "error": {"code": r.get("code"), "message": r.get("message")}}


def openai_file(file_id: str, filename: str, size: int, created_at: float, purpose: str) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "bytes": size, "created_at": int(created_at), "filename": filename,
            "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}


# -- Anthropic ---------------------------------------------------------------------------------

def anthropic_batch(job: Job, counts: dict[str, int], base_url: str) -> dict[str, Any]:
    ended = job.status == "ended"
    status = "ended" if ended else ("canceling" if job.cancel_requested else "in_progress")
    return {
        "id": job.id, "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": sum(counts.get(s, 0) for s in ("queued", "running", "submitted")),
                           "succeeded": counts.get("succeeded", 0), "errored": counts.get("errored", 0),
                           "canceled": counts.get("cancelled", 0), "expired": counts.get("expired", 0)},
        "ended_at": rfc3339(job.ended_at), "created_at": rfc3339(job.created_at),
        "expires_at": rfc3339(job.expires_at), "archived_at": None,
        "cancel_initiated_at": rfc3339(job.info.get("cancelled_at")),
        "results_url": f"{base_url}/v1/messages/batches/{job.id}/results" if ended else None,
    }


def anthropic_result_line(line: Line) -> dict[str, Any]:
    r = line.result or {}
    outcome = r.get("outcome")
    if outcome == "succeeded":
        return {"custom_id": line.custom_id, "result": {"type": "succeeded", "message": r.get("body")}}
    if outcome == "expired":
        return {"custom_id": line.custom_id, "result": {"type": "expired"}}
    if outcome == "cancelled":
        return {"custom_id": line.custom_id, "result": {"type": "canceled"}}
    body = r.get("body") or {}
    error = body if body.get("type") == "error" else {"type": "error", "error": {
        "type": "api_error", "message": r.get("message")}}
    return {"custom_id": line.custom_id, "result": {"type": "errored", "error": error}}


def jsonl(objects: Iterable[dict[str, Any]]) -> bytes:
    import orjson

    return b"".join(orjson.dumps(o) + b"\n" for o in objects)
