"""OpenAI's Files API, as far as the Batch API needs it: upload, retrieve, download, delete.

`POST /v1/files` takes `multipart/form-data` with `purpose` and `file` (Files API reference).
A `batch` file must be a `.jsonl` of at most 200 MB ("The Batch API only supports .jsonl files
up to 200 MB in size"); its lines are checked when a batch is created from it, as OpenAI does
(the batch then fails with `errors`, see openai_batches.py). Batch results are stored here as
`batch_output` files. Files live in memory until deleted or the emulator is reset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from thrifty_emulator.generate import IdMaker
from thrifty_emulator.wire import WireError

BATCH_FILE_MAX_BYTES = 200 * 1024 * 1024
# The multipart envelope around the file: boundaries, part headers, the purpose field.
UPLOAD_SLACK_BYTES = 64 * 1024
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass(slots=True)
class StoredFile:
    meta: dict[str, Any]  # the File object
    content: bytes


def _invalid(message: str, param: str | None = None, code: str | None = None) -> WireError:
    return WireError(400, "invalid_request", message, param=param, code=code)


def form_parts(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename or None, bytes)."""
    kind, _, params = content_type.partition(";")
    boundary = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if kind.strip().lower() != "multipart/form-data" or not boundary:
        raise _invalid("The request must be multipart/form-data with the fields 'file' and 'purpose'.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break  # the closing boundary
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        name = filename = None
        for header in head.decode("utf-8", "replace").split("\r\n"):
            hname, _, hvalue = header.partition(":")
            if hname.strip().lower() != "content-disposition":
                continue
            for item in hvalue.split(";"):
                key, _, value = item.strip().partition("=")
                if key == "name":
                    name = value.strip('"')
                elif key == "filename":
                    filename = value.strip('"')
        if name is not None:
            fields[name] = (filename, content.removesuffix(b"\r\n"))
    return fields


class FileStore:
    def __init__(self, ids: IdMaker) -> None:
        self._ids = ids
        self._files: dict[str, StoredFile] = {}

    def upload(self, body: bytes, content_type: str) -> dict[str, Any]:
        fields = form_parts(body, content_type)
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if "file" not in fields:
            raise _invalid("Missing required parameter: 'file'.", "file", "missing_required_parameter")
        if not purpose:
            raise _invalid("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
        if purpose not in PURPOSES:
            raise _invalid(f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", "purpose", "invalid_value")
        filename, content = fields["file"]
        filename = filename or "file"
        if purpose == "batch":
            if not filename.endswith(".jsonl"):
                raise _invalid("Invalid file format for Batch API. Must be .jsonl", "file", "invalid_file_format")
            if len(content) > BATCH_FILE_MAX_BYTES:
                raise _invalid(f"File is too large: {len(content)} bytes. The Batch API accepts .jsonl files up "
                               f"to {BATCH_FILE_MAX_BYTES} bytes (200 MB).", "file", "file_too_large")
        return self.add(filename, purpose, content).meta

    def add(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        file_id = self._ids.make("file-", 22)
        meta = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "expires_at": None, "filename": filename, "purpose": purpose, "status": "processed",
                "status_details": None}
        stored = self._files[file_id] = StoredFile(meta, content)
        return stored

    def get(self, file_id: str, param: str = "id") -> StoredFile:
        found = self._files.get(file_id)
        if found is None:
            raise WireError(404, "not_found", f"No such File object: {file_id}", param=param)
        return found

    def delete(self, file_id: str) -> dict[str, Any]:
        self.get(file_id)
        del self._files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def reset(self) -> None:
        self._files.clear()
