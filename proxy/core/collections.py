"""Which collection a request acts on: an empty name means the default one; an unknown name is NOT_FOUND."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from proxy.core.errors import InvalidArgument, NotFound

T = TypeVar("T")
U = TypeVar("U")


class Collections(Generic[T]):
    """The per-collection parts a sidecar serves (services, controllers), looked up by the name a call carries."""

    def __init__(self, members: Mapping[str, T], default: str | None) -> None:
        if default is not None and default not in members:
            raise ValueError(f"default collection {default!r} is not one of {sorted(members)}")
        self._members = dict(members)
        self.default = default

    def get(self, name: str) -> T:
        if not name:
            if self.default is None:
                raise InvalidArgument(
                    f"collection: required, this sidecar serves several ({self._known()}) and none is the "
                    "default (set default_collection in its config to make one the default)"
                )
            return self._members[self.default]
        member = self._members.get(name)
        if member is None:
            raise NotFound(f"collection {name!r} is not served here; known collections: {self._known()}")
        return member

    def name_of(self, name: str) -> str:
        """The collection an empty `name` means, checked like `get`."""
        self.get(name)
        return name or str(self.default)

    def map(self, part: Callable[[T], U]) -> Collections[U]:
        """The same collections and default, holding `part(member)` (e.g. each collection's service)."""
        return Collections({name: part(member) for name, member in self._members.items()}, self.default)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._members.items())

    def __len__(self) -> int:
        return len(self._members)

    def _known(self) -> str:
        return ", ".join(sorted(self._members))
