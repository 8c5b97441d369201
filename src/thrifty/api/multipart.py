"""multipart/form-data bodies (OpenAI's `POST /v1/files`), parsed with python-multipart.

python-multipart is the maintained streaming parser Starlette uses; this module only collects
the parts it reports into fields (text) and one file (name and bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from thrifty.errors import InvalidRequest


@dataclass(slots=True)
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # field name -> (filename, content)


def parse_form(content_type: str | None, body: bytes) -> Form:
    """The fields and files of a multipart/form-data body; InvalidRequest when it is not one."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest("the body must be multipart/form-data (a file upload), with a boundary")
    form = Form()
    state: dict[str, object] = {}
    chunks: list[bytes] = []
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        chunks.clear()
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        headers[b"".join(header_field).lower()] = b"".join(header_value)
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.append(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        content = b"".join(chunks)
        if b"filename" in disposition:
            form.files[name] = (disposition[b"filename"].decode("utf-8", "replace"), content)
        else:
            form.fields[name] = content.decode("utf-8", "replace")
        state["parts"] = int(state.get("parts", 0)) + 1  # type: ignore[arg-type]

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own errors for malformed bodies
        raise InvalidRequest(f"the multipart body could not be read: {exc}") from None
    return form
