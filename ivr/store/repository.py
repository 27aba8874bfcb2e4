"""What a table repository is, and how one definition serves the sync and the asyncio store.

A repository method is written once, synchronously, against :attr:`Repository.db`, and marked
``@operation("name")``. Reached through a :class:`~ivr.store.Database` (a ``Repository[Sync]``)
it runs in the caller's thread and returns its result. Reached through a
:class:`~ivr.store.Store` (a ``Repository[Async]``) it returns a coroutine that runs the same
method on the store's thread. mypy follows: ``db.calls.get(call_id)`` is a
``CallRecord | None`` and ``await store.calls.get(call_id)`` too, both checked against the
method's own parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from ivr.store.db import Async, Connection, M, Runner, Sync

__all__ = ["Operation", "Repository", "SchemaRepo", "operation"]

P = ParamSpec("P")
T = TypeVar("T")


class Repository(Generic[M]):
    """Base of the repositories: one per table, each holding that table's SQL."""

    def __init__(self, runner: Runner[M]) -> None:
        self._runner: Runner[M] = runner

    @property
    def db(self) -> Connection:
        """The connection, for the bodies of operations (which run where the runner says)."""
        return self._runner.connection()


class Operation(Generic[P, T]):
    """A repository method, bound according to the repository's mode (see the module)."""

    def __init__(self, name: str, method: Callable[Concatenate[Any, P], T]) -> None:
        self.name = name
        self.method = method
        self.__doc__ = method.__doc__
        signature = inspect.signature(method)
        # What help() and inspect show for a bound operation: the method without ``self``.
        self._signature = signature.replace(parameters=tuple(signature.parameters.values())[1:])

    @overload
    def __get__(self, repo: None, owner: type[Any]) -> Operation[P, T]: ...

    @overload
    def __get__(self, repo: Repository[Sync], owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, repo: Repository[Async], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, repo: Repository[Any] | None, owner: type[Any]) -> Any:
        if repo is None:
            return self
        method, name, runner = self.method, self.name, repo._runner

        def bound(*args: Any, **kwargs: Any) -> Any:
            # The arguments go to the runner's thread as they are: pass values, not views
            # of state the event loop keeps changing.
            return runner.run(name, functools.partial(method, repo, *args, **kwargs))

        bound.__name__, bound.__qualname__ = method.__name__, method.__qualname__
        bound.__doc__ = method.__doc__
        bound.__signature__ = self._signature  # type: ignore[attr-defined]
        return bound


def operation(name: str) -> Callable[[Callable[Concatenate[Any, P], T]], Operation[P, T]]:
    """Mark a repository method as the store operation ``name``, the name its
    :class:`~ivr.store.StoreError` carries."""

    def mark(method: Callable[Concatenate[Any, P], T]) -> Operation[P, T]:
        return Operation(name, method)

    return mark


class SchemaRepo(Repository[M]):
    """The ``schema_version`` table and the database file as a whole."""

    @operation("schema_version")
    def version(self) -> int:
        return self.db.schema_version()

    @operation("migrate")
    def migrate(self) -> int:
        """Apply the migrations the file has not seen (opening already does)."""
        return self.db.migrate()

    @operation("check")
    def check(self) -> list[str]:
        """``PRAGMA quick_check``: an empty list when the file is sound."""
        return self.db.check()
