"""OpenAI-compatible chat completions over HTTP: vLLM (production), `transformers serve`, any server.

Timeouts, connection failures, 408/409/429 and 5xx are retried with exponential backoff (honouring
Retry-After); after the last try an ``LLMUnavailable`` names the endpoint. Other 4xx are not
retried. Token usage comes from the response's ``usage`` block.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from openscholar.config import LLMConfig
from openscholar.llm.protocol import Completion, LLMError, LLMOutOfTime, LLMUnavailable, as_dicts

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
PASSTHROUGH = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


class OpenAIChatLLM:
    """``POST {base_url}/chat/completions`` with a shared connection pool."""

    def __init__(self, base_url: str, model: str, *, api_key: str = "", timeout_s: float = 120.0,
                 max_retries: int = 2, max_tokens: int = 512, temperature: float = 0.0,
                 backoff_s: float = 0.5, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"
        self.model_id = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                                    headers=headers, transport=transport)

    @classmethod
    def from_config(cls, config: LLMConfig, **kwargs: Any) -> OpenAIChatLLM:
        return cls(config.base_url, config.model, api_key=config.api_key.get_secret_value(),
                   timeout_s=config.timeout_s, max_retries=config.max_retries, max_tokens=config.max_tokens,
                   temperature=config.temperature, **kwargs)

    def warm_up(self) -> OpenAIChatLLM:
        return self

    def close(self) -> None:
        self._client.close()

    def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": as_dicts(messages),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        body.update({k: v for k, v in params.items() if k in PASSTHROUGH and v is not None})
        limit = params.get("time_limit_s")
        data = self._post(body, None if limit is None else time.monotonic() + float(limit))
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"unexpected response from {self.endpoint}: {str(data)[:300]}",
                           hint="check that the endpoint speaks the OpenAI chat completions API") from exc
        usage = data.get("usage") or {}
        return Completion(text=text.strip(), prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0),
                          model=str(data.get("model") or self.model_id), finish_reason=choice.get("finish_reason"))

    def _post(self, body: dict[str, Any], deadline: float | None = None) -> dict[str, Any]:
        """POST with retries; ``deadline`` (monotonic seconds) caps every attempt and the waits between."""
        last, last_retry_after, tries = "", None, 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self._delay(attempt, last_retry_after)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    break
                time.sleep(delay)
                last_retry_after = None
            timeout = self.timeout_s
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    break
            tries += 1
            try:
                resp = self._client.post(self.endpoint, json=body, timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))
            except httpx.TimeoutException:
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise LLMOutOfTime(
                        f"{self.endpoint} did not answer within the call's time limit",
                        hint="raise the step's budget (answer.budgets) or use a faster model",
                    ) from None
                last = f"no answer within {timeout:g}s"
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError as exc:
                        raise LLMError(f"{self.endpoint} returned invalid JSON: {resp.text[:200]}",
                                       hint="check that the endpoint is an OpenAI-compatible server") from exc
                detail = resp.text[:300]
                if resp.status_code not in RETRYABLE_STATUS:
                    raise LLMError(
                        f"{self.endpoint} rejected the request (HTTP {resp.status_code}): {detail}",
                        hint="check llm.model and llm.api_key" if resp.status_code in (401, 403, 404)
                        else "check the request parameters",
                        retryable=False,
                    )
                last = f"HTTP {resp.status_code}: {detail}"
                last_retry_after = _retry_after(resp)
            log.warning("LLM request to %s failed (%s), attempt %d/%d", self.endpoint, last, attempt + 1,
                        self.max_retries + 1)
        if deadline is not None and time.monotonic() >= deadline - 0.05 and not last:
            raise LLMOutOfTime(f"{self.endpoint}: the call's time limit passed before a request could be sent",
                               hint="raise the step's budget (answer.budgets)")
        raise LLMUnavailable(
            f"the LLM endpoint {self.endpoint} is unavailable after {tries} tries: {last}",
            hint="start the server (e.g. `vllm serve OpenScholar/Llama-3.1_OpenScholar-8B`) or fix llm.base_url; "
            "raise llm.timeout_s for slow models",
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 30.0)
        return self.backoff_s * (2 ** (attempt - 1))


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None
