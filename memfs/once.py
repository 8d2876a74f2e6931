"""A value made on its first use, once, whichever worker thread asks for it first: what
most mounts never need (the secret rules' compiled regexes, the embedding model) costs
nothing at start."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Once(Generic[T]):
    def __init__(self, make: Callable[[], T]):
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:  # the others wait for the first, not make their own
                value = self._value
                if value is None:
                    value = self._value = self._make()
        return value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def clear(self) -> None:
        """Forget the value (the next get makes it again); a holder of it keeps its own."""
        with self._lock:
            self._value = None
