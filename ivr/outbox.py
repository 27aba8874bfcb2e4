"""The CRM outbox: a durable delivery queue for recordings, voicemails and call records.

``enqueue`` persists the item (payload + ordered file parts) before returning; the files stay
on disk until the CRM acknowledges them. A delivery loop sends due items through a
:class:`CrmClient`, retrying with capped exponential backoff and jitter (``Retry-After``
honoured), marks rejected items ``failed`` (kept, visible), deletes acknowledged parts as they
are acknowledged, and expires anything older than the retention period with its files.

Time (wall clock, persisted), sleeping and randomness are injected, so the schedule can be
tested exactly without real time. See ``docs/storage.md`` for the semantics.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ivr.logs import get_logger
from ivr.store import NewOutboxItem, OutboxItem, Store, StoreError, Voicemail

__all__ = [
    "BackoffSettings",
    "CrmClient",
    "Delivery",
    "DeliveryError",
    "DeliveryRejected",
    "DeliveryRetryable",
    "Outbox",
    "OutboxSettings",
    "backoff_delay",
    "part_info",
    "split_file",
]

SECONDS_PER_DAY = 86400.0
MEBIBYTE = 2**20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffSettings(_Model):
    """Attempt n waits ``min(max, initial * multiplier**(n-1))``, reduced by up to
    ``jitter`` (a fraction) at random so many items failing together spread out."""

    initial_seconds: float = Field(default=5.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_seconds: float = Field(default=900.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffSettings:
        if self.max_seconds < self.initial_seconds:
            raise ValueError("max_seconds must be >= initial_seconds")
        return self


class OutboxSettings(_Model):
    """``outbox:`` section."""

    # Nothing (pending, failed or done) is kept longer than this; expired items are
    # deleted with their files and logged.
    retention_days: float = Field(default=7.0, gt=0)
    # Files above this size are split into ordered parts of at most this size.
    split_mb: float = Field(default=50.0, gt=0)
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)
    # A CRM's Retry-After is honoured up to this long.
    retry_after_max_seconds: float = Field(default=3600.0, ge=0)
    # How often the retention sweep runs.
    sweep_interval_seconds: float = Field(default=300.0, gt=0)
    # After a store error, the loop waits this long before trying again.
    store_retry_seconds: float = Field(default=10.0, gt=0)

    @property
    def split_bytes(self) -> int:
        return max(1, int(self.split_mb * MEBIBYTE))


# --------------------------------------------------------------------------------------------
# Pure helpers


def backoff_delay(attempts: int, policy: BackoffSettings, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    Jitter only shortens the wait, so ``max_seconds`` is a true cap.
    """
    exponent = max(0, attempts - 1)
    # Bound the exponent so a huge attempt count cannot overflow float math.
    base = min(policy.max_seconds, policy.initial_seconds * policy.multiplier ** min(exponent, 64))
    return base * (1.0 - policy.jitter * rng.random())


_PART_SUFFIX = re.compile(r"^(?P<name>.+)\.part(?P<index>\d{3,})of(?P<count>\d{3,})$")


def split_file(path: str | os.PathLike[str], max_bytes: int) -> list[Path]:
    """Write ``path`` as ordered parts ``<name>.partNNNofMMM`` of at most ``max_bytes`` each,
    next to it; concatenated in order they are the original. The original is left in place.
    An empty file gives one empty part. Blocking: run it in an executor."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be >= 1")
    source = Path(path)
    size = source.stat().st_size
    count = max(1, -(-size // max_bytes))
    width = max(3, len(str(count)))
    parts = [
        source.with_name(f"{source.name}.part{i:0{width}d}of{count:0{width}d}")
        for i in range(1, count + 1)
    ]
    written: list[Path] = []
    try:
        with source.open("rb") as reader:
            for part in parts:
                with part.open("wb") as writer:
                    written.append(part)
                    remaining = max_bytes
                    while remaining:
                        chunk = reader.read(min(remaining, MEBIBYTE))
                        if not chunk:
                            break
                        writer.write(chunk)
                        remaining -= len(chunk)
                    writer.flush()
                    os.fsync(writer.fileno())
    except OSError:
        for part in written:
            part.unlink(missing_ok=True)
        raise
    return parts


def part_info(part: Path) -> tuple[str, int, int]:
    """``(attachment name, index, count)`` of a part file; ``(name, 1, 1)`` if not split."""
    match = _PART_SUFFIX.match(part.name)
    if match is None:
        return part.name, 1, 1
    return match["name"], int(match["index"]), int(match["count"])


# --------------------------------------------------------------------------------------------
# The CRM side, as the outbox sees it


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One request to the CRM: the item's record and, for items with files, one part.

    ``part_index``/``part_count`` number the item's parts 1..count (0/0 for record-only
    items); ``file_name``/``file_part``/``file_parts`` say which attachment the part belongs
    to and where in it. ``idempotency_key`` is stable across retries of the same part.
    """

    outbox_id: int
    delivery_id: str
    kind: str
    payload: Mapping[str, Any]
    created_at: float
    attempt: int
    part_index: int = 0
    part_count: int = 0
    file: Path | None = None
    file_name: str | None = None
    file_part: int = 0
    file_parts: int = 0

    @property
    def idempotency_key(self) -> str:
        return f"{self.delivery_id}-{self.part_index}"


class DeliveryError(Exception):
    """Root of what a :class:`CrmClient` raises."""


class DeliveryRetryable(DeliveryError):
    """Try again later (5xx, 408, 429, timeout, connection refused...)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliveryRejected(DeliveryError):
    """The CRM refused the item for good (4xx): retrying would not help."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CrmClient(Protocol):
    async def deliver(self, delivery: Delivery) -> None:
        """Return when the CRM acknowledged; raise a :class:`DeliveryError` otherwise."""
        ...


# --------------------------------------------------------------------------------------------
# The outbox


Sleep = Callable[[float], Awaitable[None]]


class Outbox:
    """Durable CRM delivery. ``await enqueue(...)``; run ``await outbox.run()`` as a task and
    ``outbox.stop()`` to end it (it finishes the request in flight)."""

    def __init__(
        self,
        store: Store,
        client: CrmClient,
        settings: OutboxSettings | None = None,
        *,
        now: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        idle_seconds: float = 60.0,
    ) -> None:
        self._store = store
        self._client = client
        self._settings = settings or OutboxSettings()
        self._now = now
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._log = get_logger(__name__)

    @property
    def settings(self) -> OutboxSettings:
        return self._settings

    # -- enqueue -------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any],
        files: Sequence[str | os.PathLike[str]] = (),
        *,
        voicemail: Voicemail | None = None,
        keep_originals: bool = False,
    ) -> int:
        """Persist a delivery and return its outbox id. The outbox owns ``files`` from now
        on (deleted once acknowledged or expired); with ``keep_originals`` it works on
        copies and leaves the given files alone. Files above ``split_mb`` are split into
        ordered parts first. With ``voicemail``, the voicemail row and this item are
        written in one transaction. Raises :class:`StoreError` if nothing was persisted
        (the given files are then untouched)."""
        loop = asyncio.get_running_loop()
        limit = self._settings.split_bytes
        originals = [Path(f) for f in files]
        parts: list[Path] = []
        created: list[Path] = []  # part files we wrote, removed again if the write fails
        split: list[Path] = []  # originals now represented by parts
        try:
            for original in originals:
                size = (await loop.run_in_executor(None, original.stat)).st_size
                if size > limit or keep_originals:
                    pieces = await loop.run_in_executor(None, split_file, original, limit)
                    created.extend(pieces)
                    parts.extend(pieces)
                    split.append(original)
                else:
                    parts.append(original)
            # Not from the injected rng: a seeded rng on two nodes would give two items the
            # same idempotency key, and the CRM would drop one as a duplicate.
            item = NewOutboxItem(
                kind=kind,
                delivery_id=uuid.uuid4().hex,
                payload=dict(payload),
                files=tuple(parts),
                created_at=self._now(),
            )
            if voicemail is not None:
                item_id = await self._store.voicemails.add(voicemail, crm=item)
                assert item_id is not None
            else:
                item_id = await self._store.outbox.enqueue(item)
        except (StoreError, OSError):
            for path in created:
                path.unlink(missing_ok=True)
            raise
        if not keep_originals:
            for original in split:
                # Committed: the parts now carry the data. A crash just before this line
                # leaves the original behind (never the reverse).
                original.unlink(missing_ok=True)
        self._log.info("outbox_enqueued", outbox_id=item_id, kind=kind, parts=len(parts))
        self._wake.set()
        return item_id

    async def requeue(self, item_id: int) -> bool:
        """Retry a ``failed`` item now (after the CRM side was fixed)."""
        done = await self._store.outbox.requeue(item_id, self._now())
        if done:
            self._wake.set()
        return done

    # -- delivery ------------------------------------------------------------------------

    async def run_once(self) -> float | None:
        """Deliver every item due now; return seconds until the next one is due (None when
        nothing is pending)."""
        for item in await self._store.outbox.due(self._now()):
            if self._stopping:
                break
            await self._deliver(item)
        due = await self._store.outbox.next_due()
        return None if due is None else max(0.0, due - self._now())

    async def _deliver(self, item: OutboxItem) -> None:
        attempt = item.attempts + 1
        log = self._log.bind(outbox_id=item.id, kind=item.kind, attempt=attempt)
        base = Delivery(
            outbox_id=item.id,
            delivery_id=item.delivery_id,
            kind=item.kind,
            payload=item.payload,
            created_at=item.created_at,
            attempt=attempt,
        )
        count = len(item.files)
        try:
            if count == 0:
                await self._client.deliver(base)
            for index in range(item.parts_acked, count):
                part = item.files[index]
                if not part.exists():
                    raise DeliveryRejected(f"part file {part} is missing")
                name, file_part, file_parts = part_info(part)
                await self._client.deliver(
                    Delivery(
                        outbox_id=item.id,
                        delivery_id=item.delivery_id,
                        kind=item.kind,
                        payload=item.payload,
                        created_at=item.created_at,
                        attempt=attempt,
                        part_index=index + 1,
                        part_count=count,
                        file=part,
                        file_name=name,
                        file_part=file_part,
                        file_parts=file_parts,
                    )
                )
                # Progress first, then the file: a crash in between re-sends nothing.
                await self._store.outbox.set_parts_acked(item.id, index + 1, self._now())
                part.unlink(missing_ok=True)
        except DeliveryRejected as error:
            await self._store.outbox.mark_failed(
                item.id, attempts=attempt, error=str(error), now=self._now()
            )
            log.error("outbox_rejected", error=str(error), status=error.status)
            return
        except DeliveryRetryable as error:
            delay = backoff_delay(attempt, self._settings.backoff, self._rng)
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, self._settings.retry_after_max_seconds))
            now = self._now()
            await self._store.outbox.retry_later(
                item.id, attempts=attempt, next_attempt_at=now + delay, error=str(error), now=now
            )
            log.warning(
                "outbox_retry",
                error=str(error),
                retry_in_seconds=round(delay, 3),
                retry_after=error.retry_after,
            )
            return
        await self._store.outbox.mark_done(item.id, self._now())
        log.info("outbox_delivered", parts=count)

    # -- retention -----------------------------------------------------------------------

    async def sweep(self) -> list[int]:
        """Delete every item older than the retention period with its remaining files;
        returns their ids. Undelivered ones are logged as ``outbox_expired``."""
        cutoff = self._now() - self._settings.retention_days * SECONDS_PER_DAY
        old = await self._store.outbox.older_than(cutoff)
        if not old:
            return []
        loop = asyncio.get_running_loop()
        for item in old:
            await loop.run_in_executor(None, _unlink_all, item.files)
            if item.state != "done":
                self._log.warning(
                    "outbox_expired",
                    outbox_id=item.id,
                    kind=item.kind,
                    state=item.state,
                    attempts=item.attempts,
                    parts_acked=item.parts_acked,
                    parts=len(item.files),
                    last_error=item.last_error,
                    age_days=round((self._now() - item.created_at) / SECONDS_PER_DAY, 2),
                )
        ids = [item.id for item in old]
        await self._store.outbox.delete(ids)
        return ids

    # -- the loop ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Sweep and deliver until :meth:`stop`. Store errors are logged and retried;
        the loop never dies while the engine runs."""
        self._stopping = False
        next_sweep = self._now()
        while not self._stopping:
            self._wake.clear()
            wait: float | None
            try:
                if self._now() >= next_sweep:
                    await self.sweep()
                    next_sweep = self._now() + self._settings.sweep_interval_seconds
                wait = await self.run_once()
            except StoreError as error:
                self._log.error("outbox_store_error", error=str(error), reason=error.reason)
                wait = self._settings.store_retry_seconds
            except Exception:
                # A bug in a client must not stop deliveries for the life of the process.
                self._log.exception("outbox_loop_error")
                wait = self._settings.store_retry_seconds
            if self._stopping:
                break
            candidates = [self._idle_seconds, max(0.0, next_sweep - self._now())]
            if wait is not None:
                candidates.append(wait)
            await self._pause(min(candidates))

    async def _pause(self, seconds: float) -> None:
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()


def _unlink_all(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
