"""The gateway's own OpenAPI 3.1 document, served at `GET /openapi.json`.

The chat surfaces' request schemas are built from the same field table the wires' `check()`
enforces (`thrifty.wire.fields`), so a request the document accepts is never refused by the
gateway's own validation (the provider may still refuse a value it does not support). A budget's
schema is pydantic's, from `BudgetConfig`. Errors are documented in each protocol's shape.
"""

from __future__ import annotations

from typing import Any

from thrifty import jsonutil
from thrifty.wire.fields import (
    ANTHROPIC_CHECK, BLOCK_FIELDS, FUNCTION_FIELDS, MESSAGE_FIELDS, OPENAI_CHECK, TOOL_CALL_FIELDS, TOOL_FIELDS, Checker,
)

_REF = "#/components/schemas/"

_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "positive": {"type": "integer", "minimum": 1},
    "count": {"type": "integer", "minimum": 0},
    "number": {"type": "number"},
    "object": {"type": "object"},
    "array": {"type": "array"},
    "objects": {"type": "array", "items": {"type": "object"}},
    "strings": {"type": "array", "items": {"type": "string"}},
    "string_or_strings": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "string_or_object": {"anyOf": [{"type": "string"}, {"type": "object"}]},
    "string_or_objects": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _object(table: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {name: dict(_KIND_SCHEMAS[kind]) for name, kind in table.items()},
            **extra}


def _content(nested: bool = False) -> dict[str, Any]:
    block = _object(BLOCK_FIELDS, required=["type"])
    block["properties"]["type"] = {"type": "string"}
    if not nested:
        block["properties"]["content"] = _content(nested=True)
    return {"anyOf": [{"type": "string"}, {"type": "array", "items": block}]}


def request_schema(checker: Checker) -> dict[str, Any]:
    """A chat request as `checker` validates it (other fields are passed on to the provider)."""
    props = {name: dict(_KIND_SCHEMAS[kind]) for name, kind in checker.fields.items()}
    props["model"] = {"type": "string", "minLength": 1}
    function = _object(FUNCTION_FIELDS)
    message = _object(MESSAGE_FIELDS, required=["role"])
    message["properties"].update(role={"enum": list(checker.roles)}, content=_content(),
                                 tool_calls={"type": "array", "items": _object(TOOL_CALL_FIELDS)})
    message["properties"]["tool_calls"]["items"]["properties"]["function"] = function
    props["messages"] = {"type": "array", "minItems": 1, "items": message}
    tool = _object(TOOL_FIELDS)
    tool["properties"]["function"] = function
    props["tools"] = {"type": "array", "items": tool}
    if "system" in props:
        props["system"] = _content()
    return {"type": "object", "required": ["model", "messages", *checker.required], "properties": props}


_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
_ANTHROPIC_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"},
    "error": {"type": "object", "required": ["type", "message"],
              "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answers(ok: dict[str, Any] | None, error: str = "OpenAIError", ok_status: str = "200",
             stream: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok is not None:
        out[ok_status] = _json(ok, "success")
        if stream:
            out[ok_status]["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    out["default"] = _json(_ref(error), "an error, in the protocol's own shape")
    return out


def _attribution_headers() -> list[dict[str, Any]]:
    return [{"name": name, "in": "header", "required": False,
             "description": "attribution recorded in the ledger; longer than server.max_attribution_chars "
                            "(default 256) is refused with 400",
             "schema": {"type": "string", "maxLength": 256, "pattern": "^[\\x20-\\x7e]*$"}}
            for name in ("x-thrifty-feature", "x-thrifty-user", "x-thrifty-task", "x-thrifty-call-site")]


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _budget_schemas() -> dict[str, Any]:
    from thrifty.budgets.limits import BudgetConfig

    schema = BudgetConfig.model_json_schema(ref_template=_REF + "{model}", mode="validation")
    defs = schema.pop("$defs", {})
    return {**defs, "Budget": schema}


def _batch_paths(chat_params: list[dict[str, Any]], any_object: dict[str, Any]) -> dict[str, Any]:
    """The batch lane's surfaces (thrifty.api.batches; docs/batch.md)."""
    def path_id(name: str = "id") -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    openai_batch = {"type": "object", "required": ["id", "object", "status", "request_counts"],
                    "properties": {"object": {"const": "batch"}}}
    message_batch = {"type": "object", "required": ["id", "type", "processing_status", "request_counts"],
                     "properties": {"type": {"const": "message_batch"}}}
    job = {"type": "object", "required": ["id", "object", "status"], "properties": {"object": {"const": "thrifty.job"}}}
    listing = {"type": "object", "required": ["data", "has_more"]}
    limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size")
    op = {"security": [{"bearer": []}]}
    aop = {"security": [{"bearer": []}, {"x-api-key": []}]}
    return {
        "/v1/files": {"post": {**op, "summary": "upload a batch input file (purpose: batch)", "operationId": "uploadFile",
                               "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                                   "type": "object", "required": ["file", "purpose"],
                                   "properties": {"file": {"type": "string", "format": "binary"},
                                                  "purpose": {"const": "batch"}}}}}},
                               "responses": _answers(any_object)}},
        "/v1/files/{id}": {"get": {**op, "summary": "a file (input, or a finished batch's output/errors)",
                                   "operationId": "getFile", "parameters": [path_id()],
                                   "responses": _answers(any_object)}},
        "/v1/files/{id}/content": {"get": {**op, "summary": "a file's content (JSON Lines)",
                                           "operationId": "fileContent", "parameters": [path_id()],
                                           "responses": {"200": {"description": "JSON Lines", "content": {
                                               "application/jsonl": {"schema": {"type": "string"}}}},
                                               "default": _json(_ref("OpenAIError"), "an error")}}},
        "/v1/batches": {
            "post": {**op, "summary": "a batch job from an uploaded file (OpenAI Batch API)", "operationId": "createBatch",
                     "parameters": chat_params,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["input_file_id", "endpoint", "completion_window"],
                         "properties": {"input_file_id": {"type": "string"},
                                        "endpoint": {"enum": ["/v1/chat/completions", "/v1/embeddings"]},
                                        "completion_window": {"const": "24h"},
                                        "metadata": {"type": "object", "maxProperties": 16,
                                                     "additionalProperties": {"type": "string", "maxLength": 512}}}}}}},
                     "responses": _answers(openai_batch)},
            "get": {**op, "summary": "this tenant's batches, newest first", "operationId": "listBatches",
                    "parameters": [limit, _query("after", {"type": "string"}, "a batch id: list older ones")],
                    "responses": _answers(listing)}},
        "/v1/batches/{id}": {"get": {**op, "summary": "a batch", "operationId": "getBatch", "parameters": [path_id()],
                                     "responses": _answers(openai_batch)}},
        "/v1/batches/{id}/cancel": {"post": {**op, "summary": "cancel a batch", "operationId": "cancelBatch",
                                             "parameters": [path_id()], "responses": _answers(openai_batch)}},
        "/v1/messages/batches": {
            "post": {**aop, "summary": "a message batch (Anthropic Message Batches)", "operationId": "createMessageBatch",
                     "parameters": chat_params,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["requests"], "additionalProperties": False,
                         "properties": {"requests": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "required": ["custom_id", "params"],
                             "properties": {"custom_id": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
                                            "params": _ref("MessagesRequest")}}}}}}}},
                     "responses": _answers(message_batch, "AnthropicError")},
            "get": {**aop, "summary": "this tenant's message batches, newest first", "operationId": "listMessageBatches",
                    "parameters": [_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
                                   _query("after_id", {"type": "string"}, "list older ones"),
                                   _query("before_id", {"type": "string"}, "list newer ones")],
                    "responses": _answers(listing, "AnthropicError")}},
        "/v1/messages/batches/{id}": {"get": {**aop, "summary": "a message batch", "operationId": "getMessageBatch",
                                              "parameters": [path_id()],
                                              "responses": _answers(message_batch, "AnthropicError")}},
        "/v1/messages/batches/{id}/results": {"get": {
            **aop, "summary": "an ended message batch's results (JSON Lines)", "operationId": "messageBatchResults",
            "parameters": [path_id()],
            "responses": {"200": {"description": "JSON Lines", "content": {"application/jsonl": {"schema": {
                "type": "string"}}}}, "default": _json(_ref("AnthropicError"), "an error")}}},
        "/v1/messages/batches/{id}/cancel": {"post": {
            **aop, "summary": "cancel a message batch", "operationId": "cancelMessageBatch", "parameters": [path_id()],
            "responses": _answers(message_batch, "AnthropicError")}},
        "/v1/thrifty/jobs/{id}": {"get": {**op, "summary": "a deferred call's job (x-thrifty-defer)",
                                          "operationId": "getJob", "parameters": [path_id()],
                                          "responses": _answers(job)}},
        "/v1/thrifty/jobs/{id}/cancel": {"post": {**op, "summary": "cancel a deferred call not yet sent",
                                                  "operationId": "cancelJob", "parameters": [path_id()],
                                                  "responses": _answers(job)}},
    }


def build() -> dict[str, Any]:
    from thrifty.budgets.limits import Scope
    from typing import get_args

    scopes = list(get_args(Scope))
    chat_params = _attribution_headers()
    any_object = {"type": "object"}
    key = {"type": "object", "properties": {"id": {"type": "string"}, "tenant": {"type": "string"},
                                            "name": {"type": ["string", "null"]}}}
    paths: dict[str, Any] = {
        "/v1/chat/completions": {"post": {
            "summary": "OpenAI-compatible chat completion", "operationId": "chatCompletions",
            "security": [{"bearer": []}], "parameters": chat_params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ChatRequest")}}},
            "responses": _answers(_ref("ChatCompletion"), stream=True)}},
        "/v1/messages": {"post": {
            "summary": "Anthropic-compatible messages", "operationId": "messages",
            "security": [{"bearer": []}, {"x-api-key": []}], "parameters": chat_params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("MessagesRequest")}}},
            "responses": _answers(_ref("Message"), "AnthropicError", stream=True)}},
        "/v1/models": {"get": {"summary": "the models and tiers this gateway serves", "operationId": "models",
                               "security": [{"bearer": []}],
                               "responses": _answers({"type": "object", "required": ["object", "data"],
                                                      "properties": {"object": {"const": "list"},
                                                                     "data": {"type": "array"}}})}},
        "/v1/responses": {"post": {
            "summary": "OpenAI Responses API (served by translation to chat completions)", "operationId": "responses",
            "security": [{"bearer": []}], "parameters": chat_params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model"],
                "properties": {"model": {"type": "string", "minLength": 1},
                               "input": _KIND_SCHEMAS["string_or_objects"],
                               "instructions": {"type": "string"}, "stream": {"type": "boolean"},
                               "max_output_tokens": {"type": "integer", "minimum": 1},
                               "temperature": {"type": "number"}, "tools": {"type": "array", "items": any_object},
                               "store": {"type": "boolean"}, "previous_response_id": {"type": "string"}}}}}},
            "responses": _answers(any_object, stream=True)}},
        "/v1/responses/{id}": {
            "get": {"summary": "a stored response (responses.store: true; only the tenant that made it)",
                    "operationId": "getResponse", "security": [{"bearer": []}],
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": _answers({"type": "object", "required": ["id", "object", "output"],
                                           "properties": {"object": {"const": "response"}}})},
            "delete": {"summary": "delete a stored response", "operationId": "deleteResponse",
                       "security": [{"bearer": []}],
                       "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                       "responses": _answers({"type": "object", "required": ["id", "object", "deleted"],
                                              "properties": {"deleted": {"const": True}}})}},
        "/v1/embeddings": {"post": {
            "summary": "OpenAI embeddings (priced, recorded, exact-cached per input)", "operationId": "embeddings",
            "security": [{"bearer": []}], "parameters": chat_params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model", "input"],
                "properties": {"model": {"type": "string", "minLength": 1},
                               "input": _KIND_SCHEMAS["string_or_strings"],
                               "encoding_format": {"enum": ["float", "base64"]},
                               "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"}}}}}},
            "responses": _answers(_ref("List"))}},
        "/v1/messages/count_tokens": {"post": {
            "summary": "Anthropic token count (the provider's, or counted here for OpenAI-wire models)",
            "operationId": "countTokens", "security": [{"bearer": []}, {"x-api-key": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model", "messages"],
                "properties": {"model": {"type": "string", "minLength": 1},
                               "messages": {"type": "array", "items": any_object},
                               "system": _KIND_SCHEMAS["string_or_objects"]}}}}},
            "responses": _answers({"type": "object", "required": ["input_tokens"],
                                   "properties": {"input_tokens": {"type": "integer"}}}, "AnthropicError")}},
        "/v1/models/{id}": {"get": {
            "summary": "one model this gateway serves", "operationId": "model", "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _answers(any_object)}},
        "/v1/thrifty/feedback": {"post": {
            "summary": "the client's verdict on an answer (success signal; evicts a bad semantic-cache hit)",
            "operationId": "feedback", "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["request_id"],
                "properties": {"request_id": {"type": "string"}, "outcome": {"enum": ["ok", "bad"]},
                               "bad": {"type": "boolean"}, "reason": {"type": "string"}}}}}},
            "responses": _answers(any_object)}},
        **_batch_paths(chat_params, any_object),
        "/health": {"get": {"summary": "liveness", "operationId": "health", "security": [],
                            "responses": {"200": _json({"type": "object", "required": ["status"],
                                                        "properties": {"status": {"const": "ok"}}}, "alive")}}},
        "/openapi.json": {"get": {"summary": "this document", "operationId": "openapi", "security": [],
                                  "responses": {"200": _json(any_object, "the OpenAPI document")}}},
        "/admin/keys": {
            "get": {"summary": "list virtual keys (ids, never keys)", "operationId": "listKeys",
                    "security": [{"admin": []}], "responses": _answers(_ref("List"))},
            "post": {"summary": "create a virtual key", "operationId": "createKey", "security": [{"admin": []}],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["tenant"],
                         "properties": {"tenant": {"type": "string", "minLength": 1, "pattern": "\\S"},
                                        "name": {"type": "string"}}}}}},
                     "responses": _answers({**key, "required": ["key", "id", "tenant"]}, ok_status="201")}},
        "/admin/keys/{id}": {"delete": {
            "summary": "revoke a virtual key", "operationId": "revokeKey", "security": [{"admin": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": _answers(key)}},
        "/admin/budgets": {"get": {"summary": "budgets in force (config and API)", "operationId": "listBudgets",
                                   "security": [{"admin": []}], "responses": _answers(_ref("List"))}},
        "/admin/budgets/{name}": {
            "put": {"summary": "create or replace an API budget", "operationId": "putBudget",
                    "security": [{"admin": []}],
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Budget")}}},
                    "responses": {**_answers(any_object), "201": _json(any_object, "created")}},
            "delete": {"summary": "delete an API budget", "operationId": "deleteBudget", "security": [{"admin": []}],
                       "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                       "responses": _answers(any_object)}},
        "/admin/spend": {"get": {
            "summary": "spend of the budgets on one scope", "operationId": "spend", "security": [{"admin": []}],
            "parameters": [_query("scope", {"enum": scopes}, "the budget scope", required=True),
                           _query("value", {"type": "string"}, "the scope's value (all scopes but global)"),
                           _query("tenant", {"type": "string"}, "the tenant, for budgets counted per tenant")],
            "responses": _answers({"type": "object", "required": ["scope", "budgets"],
                                   "properties": {"scope": {"enum": scopes}, "budgets": {"type": "array"}}})}},
        "/admin/savings": {"get": {
            "summary": "baseline, actual and each lever's saving", "operationId": "savings",
            "security": [{"admin": []}],
            "parameters": [_query("since", {"type": "string"}, "unix seconds or ISO 8601 (UTC without offset)"),
                           _query("until", {"type": "string"}, "unix seconds or ISO 8601, exclusive"),
                           _query("group_by", {"enum": ["feature", "tenant", "model", "served_model",
                                                        "requested_model", "tier"]}, "grouping")],
            "responses": _answers({"type": "object", "required": ["total"], "properties": {"total": any_object}})}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text exposition; docs/observe.md lists the series)",
            "description": "with observe.metrics.key or admin.key set, that key as a Bearer token; "
                           "with neither, only clients on loopback",
            "operationId": "prometheusMetrics", "security": [{"bearer": []}, {"admin": []}],
            "responses": {"200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "default": _json(_ref("OpenAIError"), "an error, in the protocol's own shape")}}},
        "/admin/metrics": {"get": {"summary": "this replica's lever counters", "operationId": "metrics",
                                   "security": [{"admin": []}], "responses": _answers(any_object)}},
    }
    schemas: dict[str, Any] = {
        "ChatRequest": request_schema(OPENAI_CHECK),
        "MessagesRequest": request_schema(ANTHROPIC_CHECK),
        "ChatCompletion": {"type": "object", "required": ["id", "object", "choices"],
                           "properties": {"object": {"const": "chat.completion"}, "choices": {"type": "array"}}},
        "Message": {"type": "object", "required": ["id", "type", "role", "content"],
                    "properties": {"type": {"const": "message"}, "content": {"type": "array"}}},
        "List": {"type": "object", "required": ["object", "data"],
                 "properties": {"object": {"const": "list"}, "data": {"type": "array"}}},
        "OpenAIError": _OPENAI_ERROR,
        "AnthropicError": _ANTHROPIC_ERROR,
        **_budget_schemas(),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Thrifty gateway", "version": "1",
                 "description": "An LLM cost gateway: OpenAI- and Anthropic-compatible chat surfaces, "
                                "a ledger of every call, and an admin API."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a virtual key"},
            "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "admin": {"type": "http", "scheme": "bearer", "description": "the admin key (admin.key)"}}},
    }


_DOCUMENT: bytes | None = None


def document() -> bytes:
    """The document as JSON bytes, built once."""
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = jsonutil.dumps(build())
    return _DOCUMENT
