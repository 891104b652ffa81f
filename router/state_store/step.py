"""One request's shared state in one round trip: its session check (and write), then its limits.

A request's plan depends on its session (``!/backend``, route edits, a one-off), and its limits
depend on the plan: read first, check after would be two round trips. Instead the proxy plans on
the copy of the session it last saw (``sessions.py``), and the :data:`STEP` script checks that copy's
version in the same atomic call that charges the limits: when another instance changed the session
meanwhile, the script charges nothing and returns the current session, and the request is planned
again on it (:class:`SessionChanged`). The session's write (a request noted in its history, a
one-off consumed, a session named by a header stored) goes in the same call. A request without
limits sends the session part alone, just before its first backend call; one with limits sends it
with its first acquire. Either way: one round trip per request on the hot path.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..sessions import SessionChanged

__all__ = ["NO_LIMITS", "NO_SESSION", "STEP", "Rider", "SessionChanged"]

# KEYS: the session's two keys (when ARGV[1] is 2), then one per limit.
# ARGV[1] number of session keys (0 or 2); session part: ARGV[2] the version the request planned on
# (0: not stored), ARGV[3] idle ms, ARGV[4] history entries kept, ARGV[5] the settings to store
# ('' when unchanged), ARGV[6] a history entry ('' for none). Limits: ARGV[7] lease id, ARGV[8]
# lease ms, ARGV[9] bucket idle ms, then kind and amount per limit key.
# Returns {0, 0, version} admitted, {i, retry ms, version} refused by the i-th limit,
# {-1, version, settings} when the session is not the version the request planned on.
STEP = """
local ns = tonumber(ARGV[1])
local version = 0
if ns > 0 then
  local have = redis.call('HMGET', KEYS[1], 'v', 'd')
  version = tonumber(have[1]) or 0
  if version ~= tonumber(ARGV[2]) then return {-1, version, have[2] or ''} end
  if ARGV[5] ~= '' then
    version = version + 1
    redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[5])
  end
  if version > 0 then
    local idle = tonumber(ARGV[3])
    redis.call('PEXPIRE', KEYS[1], idle)
    local keep = tonumber(ARGV[4])
    if ARGV[6] ~= '' and keep > 0 then
      redis.call('RPUSH', KEYS[2], ARGV[6])
      redis.call('LTRIM', KEYS[2], -keep, -1)
    end
    redis.call('PEXPIRE', KEYS[2], idle)
  end
end
if #KEYS == ns then return {0, 0, version} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease, lease_ms, idle_ms = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local levels = {}
for i = ns + 1, #KEYS do
  local j = i - ns
  local key, kind, amount = KEYS[i], ARGV[8 + 2 * j], tonumber(ARGV[9 + 2 * j])
  if kind == 'concurrency' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= amount then return {j, 1000, version} end
  else
    local b = redis.call('HMGET', key, 'level', 'stamp')
    local level = tonumber(b[1]) or amount
    local stamp = tonumber(b[2]) or now
    level = math.min(amount, level + math.max(0, now - stamp) * amount / 60)
    levels[i] = level
    if kind == 'rpm' and level < 1 then return {j, math.ceil((1 - level) * 60000 / amount), version} end
    if kind == 'tpm' and level <= 0 then return {j, math.ceil((1 - level) * 60000 / amount), version} end
  end
end
for i = ns + 1, #KEYS do
  local j = i - ns
  local key, kind = KEYS[i], ARGV[8 + 2 * j]
  if kind == 'concurrency' then
    redis.call('ZADD', key, now + lease_ms / 1000, lease)
    redis.call('PEXPIRE', key, lease_ms * 2)
  else
    local level = levels[i]
    if kind == 'rpm' then level = level - 1 end
    redis.call('HSET', key, 'level', tostring(level), 'stamp', tostring(now))
    redis.call('PEXPIRE', key, idle_ms)
  end
end
return {0, 0, version}
"""

NO_SESSION: tuple[Any, ...] = (0, 0, 0, 0, "", "")  # ARGV[1..6] of a step without a session part
NO_LIMITS: tuple[Any, ...] = ("", 0, 0)  # ARGV[7..9] of a step without limits


class Rider(Protocol):
    """A request's session part of a step (``sessions.SessionStep``)."""

    keys: tuple[str, str]
    args: tuple[Any, ...]  # ARGV[1..6]

    def settle(self, reply: list[Any]) -> None:
        """The step's reply: note the version; raise :class:`SessionChanged` when stale."""

    def unsent(self) -> None:
        """Redis did not answer (``fail_open``): keep this process's copy as it is now."""
