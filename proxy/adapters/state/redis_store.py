"""StateStore on Redis: the state every replica of one deployment shares.

Key layout, all under `switchyard:<namespace>:` (the type segment keeps a hash and a queue of the same
user-given name apart; per-queue suffixes contain no colon, so two queue names can never share a key):

    versions                 string   INCRBY counter of document versions
    hash:<key>               hash     get_fields / set_fields / compare_and_set_field
    events:<key>             list     RPUSH / LRANGE log
    queue:<name>:z           zset     member "<20-digit seq>|<id>", score = -priority
    queue:<name>:m           hash     id -> its zset member (de-duplication)
    queue:<name>:seq         string   insertion counter (FIFO among equal priorities)
    lease:<name>             string   owner, expiring after the TTL (PX)

Queue order: ZPOPMIN takes the lowest score, i.e. the highest priority; members of equal score are ordered
lexicographically, and the zero-padded insertion counter at the front of each member makes that order the
insertion order. Priority and order thus stay two exact fields instead of one float mixing both.
Every multi-step operation is one Lua script, so two replicas never interleave inside it.
Lease expiry runs on the Redis server's clock, the one clock all replicas share.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions
from redis.commands.core import Script
from redis.typing import EncodableT, FieldT

from proxy.adapters.state.arguments import require_number, require_positive, require_ttl
from proxy.core.errors import StateUnavailable

_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""

_COMPARE_AND_SET = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local matches
if ARGV[2] == '0' then matches = (current == false) else matches = (current == ARGV[3]) end
if not matches then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
"""

# ARGV[1] is the score as Python's repr: handed to ZADD untouched, because Lua's own number formatting
# would round it to 14 digits. The counter is padded to 20 digits (any 64-bit value), so lexicographic
# order of members equals insertion order.
_ENQUEUE = """
local added = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local member = redis.call('HGET', KEYS[2], id)
  if member then
    redis.call('ZADD', KEYS[1], 'LT', ARGV[1], member)
  else
    member = string.format('%020d', redis.call('INCR', KEYS[3])) .. '|' .. id
    redis.call('HSET', KEYS[2], id, member)
    redis.call('ZADD', KEYS[1], ARGV[1], member)
    added = added + 1
  end
end
return added
"""

# The id is everything after the first '|': the counter in front of it has no '|'.
_DEQUEUE = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local ids = {}
for i = 1, #popped, 2 do
  local id = string.sub(popped[i], string.find(popped[i], '|', 1, true) + 1)
  redis.call('HDEL', KEYS[2], id)
  ids[#ids + 1] = id
end
return ids
"""

_TRY_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner ~= false and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStateStore:
    """StateStore shared by every replica that opens the same Redis URL and namespace. Thread-safe."""

    def __init__(self, url: str, namespace: str, *, socket_timeout: float = 2.0) -> None:
        # Connecting is lazy: a replica can start before Redis; the first call reports StateUnavailable.
        self._url = url
        self._prefix = f"switchyard:{namespace}:"
        # decode_responses: every reply arrives as str, never bytes; the casts to str types below rest on it.
        self._client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, decode_responses=True
        )
        self._advance = self._client.register_script(_ADVANCE)
        self._compare_and_set = self._client.register_script(_COMPARE_AND_SET)
        self._enqueue = self._client.register_script(_ENQUEUE)
        self._dequeue = self._client.register_script(_DEQUEUE)
        self._try_lease = self._client.register_script(_TRY_LEASE)
        self._release_lease = self._client.register_script(_RELEASE_LEASE)
        self._issued = 0
        """Highest version this store handed out or was told the indexes hold: the counter's floor."""
        self._issued_lock = threading.Lock()

    def next_versions(self, count: int) -> int:
        require_positive(count, "count")
        issued_before = self._issued
        first = self._reserve(count)
        if first <= issued_before:
            # The counter went backwards (Redis restarted without persistence, or from an older snapshot): a
            # version handed out again would be rejected as stale by the indexes after being acknowledged.
            self.advance_versions(issued_before)
            first = self._reserve(count)
        return first

    def _reserve(self, count: int) -> int:
        with self._reachable():
            last = self._client.incrby(self._key("versions"), count)
        self._note_issued(last)
        return last - count + 1

    def advance_versions(self, floor: int) -> None:
        self._run(self._advance, [self._key("versions")], [floor])
        self._note_issued(floor)

    def _note_issued(self, version: int) -> None:
        with self._issued_lock:
            self._issued = max(self._issued, version)

    def get_fields(self, key: str) -> dict[str, str]:
        with self._reachable():
            return cast(dict[str, str], self._client.hgetall(self._key("hash", key)))

    def set_fields(self, key: str, values: Mapping[str, str]) -> None:
        if not values:
            return  # HSET rejects an empty mapping; writing nothing is a no-op anyway
        # Typed as redis-py's own (invariant) mapping type: a Mapping[str, str] is not one.
        fields: dict[FieldT, EncodableT] = {name: value for name, value in values.items()}
        with self._reachable():
            self._client.hset(self._key("hash", key), mapping=fields)

    def compare_and_set_field(self, key: str, field: str, expected: str | None, new: str) -> bool:
        present = "0" if expected is None else "1"
        args = [field, present, expected or "", new]
        return self._run(self._compare_and_set, [self._key("hash", key)], args) == 1

    def append_event(self, key: str, event: str) -> None:
        with self._reachable():
            self._client.rpush(self._key("events", key), event)

    def events(self, key: str) -> list[str]:
        with self._reachable():
            return cast(list[str], self._client.lrange(self._key("events", key), 0, -1))

    def enqueue(self, queue: str, ids: Sequence[str], priority: float) -> int:
        require_number(priority)
        if not ids:
            return 0
        added = self._run(self._enqueue, self._queue_keys(queue), [repr(-float(priority)), *ids])
        return cast(int, added)  # _ENQUEUE returns the count of ids it added, a Lua number: an int reply

    def dequeue(self, queue: str, count: int) -> list[str]:
        require_positive(count, "count")
        popped = self._run(self._dequeue, self._queue_keys(queue)[:2], [count])
        return cast(list[str], popped)  # _DEQUEUE returns the popped ids as a Lua table: a list of str

    def queue_size(self, queue: str) -> int:
        with self._reachable():
            return self._client.zcard(self._queue_keys(queue)[0])

    def try_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        ttl_ms = _ttl_ms(ttl_s)
        return self._run(self._try_lease, [self._key("lease", name)], [owner, ttl_ms]) == 1

    def release_lease(self, name: str, owner: str) -> None:
        self._run(self._release_lease, [self._key("lease", name)], [owner])

    def lease_owner(self, name: str) -> str | None:
        with self._reachable():
            return cast(str | None, self._client.get(self._key("lease", name)))

    def close(self) -> None:
        self._client.close()

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}:{name}" if name else f"{self._prefix}{kind}"

    def _queue_keys(self, queue: str) -> list[str]:
        base = self._key("queue", queue)
        return [f"{base}:z", f"{base}:m", f"{base}:seq"]

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> object:
        """The script's reply, whose shape only the script knows."""
        with self._reachable():
            return script(keys=keys, args=args)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise StateUnavailable(_unreachable_message(self._url, error)) from error


def _unreachable_message(url: str, error: Exception) -> str:
    return (
        f"Redis state store at {_redact(url)} is unreachable ({error}). Check that Redis is running and "
        "reachable from this replica and that state.redis_url points at it; for a local server run "
        "scripts/ensure-redis.sh."
    )


def _redact(url: str) -> str:
    """The URL without its password, which must not reach logs or gRPC status messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _ttl_ms(ttl_s: float) -> int:
    return max(1, round(require_ttl(ttl_s) * 1000))
