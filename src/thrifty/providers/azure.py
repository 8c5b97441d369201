"""Azure OpenAI: OpenAI's chat wire behind Azure's deployment URLs and its `api-key` header.

Two URL forms (Azure OpenAI REST reference; "API version lifecycle" for v1), for chat
completions and embeddings alike (`endpoint(path, model=...)`):

- dated versions: `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`
  (`.../{deployment}/embeddings?api-version=...`); the deployment in the URL picks the model, the
  body's `model` is ignored;
- `api_version: v1`: `{endpoint}/openai/v1/chat/completions` (`/openai/v1/embeddings`), the body's
  `model` naming the deployment.

`base_url` is the resource endpoint (`https://RESOURCE.openai.azure.com`). The deployment's
`model:` stays the model it is priced as; `azure.deployments` maps it to the Azure deployment's
name where they differ. Errors come in OpenAI's shape (some with only `code` and `message`) and
a filtered answer's `finish_reason: content_filter` reaches the client unchanged.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping
from urllib.parse import quote, urlencode

from thrifty.config import AzureOptions, ProviderConfig
from thrifty.providers.base import register
from thrifty.providers.openai import OpenAIProvider
from thrifty.redact import Redactor

V1 = "v1"
_CHAT = "/chat/completions"


@register("azure")
class AzureOpenAIProvider(OpenAIProvider):
    path = ""  # the URL names the deployment: see url_for

    def __init__(self, name: str, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        self.options = config.azure or AzureOptions()
        super().__init__(name, config, redactor=redactor)
        self._endpoint = config.base_url.rstrip("/").removesuffix("/openai").rstrip("/")
        self._v1 = self.options.api_version == V1
        self._query = "?" + urlencode({"api-version": self.options.api_version})
        self.url = f"{self._endpoint}/openai/v1/chat/completions" if self._v1 else self._endpoint

    def auth_headers(self) -> dict[str, str]:
        return {"api-key": self.config.api_key} if self.config.api_key else {}

    def deployment_of(self, model: Any) -> str:
        """The Azure deployment that serves `model`."""
        name = str(model or "")
        return self.options.deployments.get(name, name)

    def url_for(self, body: dict[str, Any]) -> str:
        return self.endpoint(_CHAT, model=body.get("model"))

    def endpoint(self, path: str, *, model: str | None = None) -> str:
        if self._v1:
            return f"{self._endpoint}/openai/v1{path}"
        if model is None:  # not a deployment's operation
            return f"{self._endpoint}/openai{path}{self._query}"
        deployment = quote(self.deployment_of(model), safe="")
        return f"{self._endpoint}/openai/deployments/{deployment}{path}{self._query}"

    def _for_azure(self, body: dict[str, Any]) -> dict[str, Any]:
        """The v1 API reads the deployment from the body's `model`."""
        if not self._v1 or not isinstance(body.get("model"), str):
            return body
        deployment = self.deployment_of(body.get("model"))
        return body if deployment == body.get("model") else {**body, "model": deployment}

    async def post_json(self, url: str, body: dict[str, Any], client_headers: Mapping[str, str]) -> dict[str, Any]:
        # Every JSON operation (chat completions, embeddings) names the deployment the same way.
        return await super().post_json(url, self._for_azure(body), client_headers)

    async def stream(self, body: dict[str, Any],
                     client_headers: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        async for event in super().stream(self._for_azure(body), client_headers):
            yield event
