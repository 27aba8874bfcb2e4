"""CRM adapter: a generic HTTP webhook the outbox delivers to.

One POST per delivery, authenticated by an API key header. A record without files is sent
as ``application/json``; each file part is sent as ``multipart/form-data`` with the same
JSON (``metadata`` field) plus the part's bytes (``file`` field), one request per part so a
large recording never has to fit in one request. 2xx acknowledges; 4xx other than 408/429
rejects for good; 408, 429, 5xx, timeouts and connection errors are retried by the outbox,
honouring ``Retry-After``. Redirects are not followed (a moved webhook is a config error).

The HTTP client is the standard library's ``urllib`` on a small dedicated thread pool, so
the event loop never blocks. The wire contract is in ``docs/storage.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import mimetypes
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ivr.outbox import Delivery, DeliveryRejected, DeliveryRetryable
from ivr.yamlloc import ConfigPath

__all__ = [
    "CrmSettings",
    "HttpCrmClient",
    "build_request",
    "classify_response",
    "parse_retry_after",
]

USER_AGENT = "switchhook-crm/1"


class CrmSettings(BaseModel):
    """``crm:`` section (absent: no CRM, nothing is enqueued for it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    api_key: SecretStr
    # The header carrying the key, and what precedes the key in it ("" for a bare key,
    # e.g. api_key_header: X-Api-Key, api_key_prefix: "").
    api_key_header: str = "Authorization"
    api_key_prefix: str = "Bearer "
    timeout_seconds: float = Field(default=30.0, gt=0)
    verify_tls: bool = True
    ca_file: ConfigPath | None = None
    extra_headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("api_key_header")
    @classmethod
    def _token(cls, value: str) -> str:
        if not value or any(ch in value for ch in " :\r\n\t"):
            raise ValueError(f"{value!r} is not a valid header name")
        return value


# --------------------------------------------------------------------------------------------
# Pure parts: request building and response classification


def _metadata(delivery: Delivery, node: str, file_bytes: bytes | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": delivery.kind,
        "delivery_id": delivery.delivery_id,
        "node": node,
        "created_at": datetime.fromtimestamp(delivery.created_at, UTC).isoformat(),
        "attempt": delivery.attempt,
        "record": dict(delivery.payload),
        "part": None,
    }
    if file_bytes is not None:
        meta["part"] = {
            "index": delivery.part_index,
            "count": delivery.part_count,
            "file_name": delivery.file_name,
            "file_part": delivery.file_part,
            "file_parts": delivery.file_parts,
            "size": len(file_bytes),
            "sha256": hashlib.sha256(file_bytes).hexdigest(),
        }
    return meta


def build_request(
    delivery: Delivery,
    *,
    node: str,
    api_key: str,
    settings: CrmSettings,
    boundary: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body for one delivery. Reads the part file (blocking)."""
    headers = {
        **settings.extra_headers,
        "User-Agent": USER_AGENT,
        settings.api_key_header: f"{settings.api_key_prefix}{api_key}",
        "Idempotency-Key": delivery.idempotency_key,
        "X-Switchhook-Delivery-Id": delivery.delivery_id,
        "X-Switchhook-Kind": delivery.kind,
        "X-Switchhook-Node": node,
    }
    if delivery.file is None:
        body = json.dumps(_metadata(delivery, node, None), default=str).encode()
        headers["Content-Type"] = "application/json"
        return headers, body
    data = delivery.file.read_bytes()
    meta = json.dumps(_metadata(delivery, node, data), default=str).encode()
    boundary = boundary or f"switchhook-{secrets.token_hex(16)}"
    name = delivery.file_name or delivery.file.name
    content_type = "application/octet-stream"
    if delivery.file_parts <= 1:
        content_type = mimetypes.guess_type(name)[0] or content_type
    quoted = name.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="metadata"\r\n',
            b"Content-Type: application/json\r\n\r\n",
            meta,
            b"\r\n",
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'.encode(),
            f"Content-Type: {content_type}\r\n\r\n".encode(),
            data,
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    headers["X-Switchhook-Part-Index"] = str(delivery.part_index)
    headers["X-Switchhook-Part-Count"] = str(delivery.part_count)
    return headers, body


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; seconds from
    ``now`` (never negative), None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def classify_response(
    status: int, headers: Mapping[str, str] | Message, body: bytes, now: float
) -> None:
    """Return on 2xx; raise :class:`DeliveryRetryable` or :class:`DeliveryRejected`."""
    if 200 <= status < 300:
        return
    snippet = body[:200].decode("utf-8", "replace").strip()
    message = f"CRM answered {status}" + (f": {snippet}" if snippet else "")
    if status in (408, 429) or status >= 500:
        raise DeliveryRetryable(
            message, retry_after=parse_retry_after(headers.get("Retry-After"), now)
        )
    if 300 <= status < 400:
        raise DeliveryRejected(
            f"{message} (redirect to {headers.get('Location')!r} not followed; fix crm.url)",
            status=status,
        )
    if 400 <= status < 500:
        raise DeliveryRejected(message, status=status)
    raise DeliveryRetryable(message)


# --------------------------------------------------------------------------------------------
# The adapter


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class HttpCrmClient:
    """:class:`ivr.outbox.CrmClient` over HTTP(S). ``close()`` when done."""

    def __init__(
        self,
        settings: CrmSettings,
        *,
        node: str,
        now: Callable[[], float] = time.time,
        max_workers: int = 2,
    ) -> None:
        self._settings = settings
        self._node = node
        self._now = now
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="switchhook-crm"
        )
        context: ssl.SSLContext | None = None
        if urlsplit(settings.url).scheme == "https":
            context = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file else None
            )
            if not settings.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def deliver(self, delivery: Delivery) -> None:
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._post, delivery),
                # urllib's timeout bounds each socket operation; this bounds the whole request.
                timeout=self._settings.timeout_seconds * 2,
            )
        except TimeoutError:
            raise DeliveryRetryable(
                f"CRM request timed out after {self._settings.timeout_seconds * 2:g}s"
            ) from None
        classify_response(status, headers, body, self._now())

    def _post(self, delivery: Delivery) -> tuple[int, Message, bytes]:
        """Blocking; runs on the adapter's pool. Transport errors become DeliveryErrors."""
        try:
            headers, body = build_request(
                delivery,
                node=self._node,
                api_key=self._settings.api_key.get_secret_value(),
                settings=self._settings,
            )
        except OSError as error:
            raise DeliveryRejected(f"cannot read part {delivery.file}: {error}") from None
        request = urllib.request.Request(
            self._settings.url, data=body, headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self._settings.timeout_seconds) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()
        except urllib.error.URLError as error:
            raise DeliveryRetryable(f"CRM unreachable: {error.reason}") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as error:
            raise DeliveryRetryable(
                f"CRM request failed: {type(error).__name__}: {error}"
            ) from None
