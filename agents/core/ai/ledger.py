"""The spend ledger the whole fleet shares: one cap for any number of agents, hosts and restarts.

Every reservation (a call's worst case), its settlement (the actual usage, never more), each
agent's last admitted call (its rate limit) and any pause Anthropic imposed are rows in one
ledger. Check-and-reserve is one atomic step in the ledger itself: a SQLite transaction taken
with `BEGIN IMMEDIATE` (one machine), or one Lua script in Redis (several hosts). So the cost
guard's proof carries over from one process to the fleet: every admission sees every entry of
the window that ends at its own time, and entries only shrink afterwards.

Time is the ledger's, not the caller's: inside the atomic step `now` is raised to the latest
time the ledger has seen, so admissions are recorded in order even when two processes' (or two
hosts') clocks disagree a little. A clock far ahead only makes everyone wait; see the README.

Any failure to read or write the ledger (unreachable, locked for too long, corrupt) raises
`LedgerUnavailable`; the guard refuses the call: the ledger fails closed.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.ports import (
    Admission,
    Cap,
    Entry,
    Ledger,
    LedgerUnavailable,
    Request,
    State,
    Usage,
)

if TYPE_CHECKING:
    from agents.core.settings import CommonSettings

RATE_LIMITED = "rate_limited"
API_SPEND_LIMIT = "api_spend_limit_paused"
OPEN_STATES = ("reserved", "kept")  # worst cases still counted in full
DAY = 86_400.0
# The microsecond of slack absorbs float rounding in `now - last` (a call exactly one interval
# later must pass); it cannot admit a meaningful extra call.
INTERVAL_SLACK = 1e-6


def aggregate(
    rows: Iterable[tuple[str, float, float, int, str]],
    caps: Sequence[Cap],
    agent: str,
    now: float,
) -> tuple[Usage, ...]:
    """Sum (agent, at, usd, tokens, state) rows into each cap's window ending at `now`."""
    reserved = [0.0] * len(caps)
    settled = [0.0] * len(caps)
    for row_agent, at, usd, tokens, state in rows:
        if not (_sane(at) and _sane(usd) and _sane(tokens)) or usd < 0 or tokens < 0:
            raise LedgerUnavailable(f"corrupt ledger entry: at={at!r} usd={usd!r}")
        is_open = state in OPEN_STATES
        for i, cap in enumerate(caps):
            if at > now - cap.window_s and (cap.scope == "fleet" or row_agent == agent):
                amount = float(usd if cap.unit == "usd" else tokens)
                if is_open:
                    reserved[i] += amount
                else:
                    settled[i] += amount
    return tuple(Usage(cap, reserved[i], settled[i]) for i, cap in enumerate(caps))


def first_refusal(request: Request, usage: Sequence[Usage]) -> tuple[str, str] | None:
    for u in usage:
        amount = request.usd if u.cap.unit == "usd" else float(request.tokens)
        if u.used + amount > u.cap.limit:
            scope = "fleet" if u.cap.scope == "fleet" else request.agent
            unit = "$" if u.cap.unit == "usd" else ""
            return u.cap.reason, (
                f"{scope}: {unit}{u.used:.6f} + {unit}{amount:.6f} > {unit}{u.cap.limit:.4f} "
                f"per {u.cap.window}"
            )
    return None


def max_window_sum(points: Iterable[tuple[float, float]], window: float) -> float:
    """The largest sum of values over any window (t - window, t] of (time, value) points: the
    replay check that no sliding window ever exceeded a cap. Sums change only at a point's
    time, so windows ending at points are the only ones to look at."""
    ordered = sorted(points)
    best = total = 0.0
    low = 0
    for at, value in ordered:
        total += value
        while ordered[low][0] <= at - window:
            total -= ordered[low][1]
            low += 1
        best = max(best, total)
    return best


def _sane(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- SQLite: one machine ---------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    at REAL NOT NULL,
    usd REAL NOT NULL CHECK (usd >= 0),
    tokens INTEGER NOT NULL CHECK (tokens >= 0),
    reserved_usd REAL NOT NULL,
    reserved_tokens INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'released', 'kept'))
);
CREATE INDEX IF NOT EXISTS entries_at ON entries (at);
CREATE TABLE IF NOT EXISTS agents (agent TEXT PRIMARY KEY, last_call REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


class SqliteLedger:
    """A SQLite file in WAL mode; `:memory:` gives a private in-process ledger (dry-run, tests).

    One connection per ledger object, guarded by a lock (the engine may be called from more
    than one thread). `BEGIN IMMEDIATE` takes the write lock before reading the windows, so
    two processes cannot both see room for one more call; others wait up to `busy_timeout_s`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_s: float = DAY,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.description = "memory" if self.path == ":memory:" else f"sqlite:{self.path}"
        self.retention_s = retention_s
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a reservation that returned is on disk even if the machine loses power,
            # so a restarted fleet cannot forget a call that was already sent.
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        # Reconnect on the next call: the file may have been replaced or repaired. (A private
        # in-memory ledger would lose its entries: keep it.)
        if self._conn is not None and self.path != ":memory:":
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _run(self, what: str, body: Any, *, write: bool = True) -> Any:
        with self._lock:
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = body(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except (sqlite3.Error, OSError) as exc:
                self._drop()
                raise LedgerUnavailable(
                    f"{self.description}: {what} failed ({type(exc).__name__}: {exc})"
                ) from exc
            except LedgerUnavailable:
                self._drop()
                raise

    def reserve(self, request: Request) -> Admission:
        return self._run("reserve", lambda conn: self._reserve(conn, request))  # type: ignore[no-any-return]

    def _reserve(self, conn: sqlite3.Connection, request: Request) -> Admission:
        seen = _meta(conn, "clock")
        now = max(request.now, seen)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?)", (now,))
        horizon = max((cap.window_s for cap in request.caps), default=0.0)
        rows = conn.execute(
            "SELECT agent, at, usd, tokens, state FROM entries WHERE at > ?", (now - horizon,)
        ).fetchall()
        usage = aggregate(rows, request.caps, request.agent, now)

        def refuse(reason: str, detail: str) -> Admission:
            return Admission(reason, detail, 0, now, usage)

        paused = _meta(conn, "paused_until")
        if now < paused:
            return refuse(
                API_SPEND_LIMIT, f"Anthropic's spend limit: paused for {paused - now:.0f}s"
            )
        last = conn.execute(
            "SELECT last_call FROM agents WHERE agent = ?", (request.agent,)
        ).fetchone()
        if last is not None and now - last[0] + INTERVAL_SLACK < request.min_interval_s:
            wait = request.min_interval_s - (now - last[0])
            return refuse(RATE_LIMITED, f"next call allowed in {wait:.1f}s")
        refusal = first_refusal(request, usage)
        if refusal is not None:
            return refuse(*refusal)
        cursor = conn.execute(
            "INSERT INTO entries (agent, at, usd, tokens, reserved_usd, reserved_tokens, state) "
            "VALUES (?, ?, ?, ?, ?, ?, 'reserved')",
            (request.agent, now, request.usd, request.tokens, request.usd, request.tokens),
        )
        conn.execute(
            "INSERT INTO agents (agent, last_call) VALUES (?, ?) "
            "ON CONFLICT (agent) DO UPDATE SET last_call = excluded.last_call",
            (request.agent, now),
        )
        conn.execute("DELETE FROM entries WHERE at <= ?", (now - max(self.retention_s, horizon),))
        return Admission(None, "", int(cursor.lastrowid or 0), now, usage)

    def finish(self, entry_id: int, usd: float, tokens: int, state: State) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if state == "kept":
                conn.execute(
                    "UPDATE entries SET state = 'kept' WHERE id = ? AND state = 'reserved'",
                    (entry_id,),
                )
                return
            conn.execute(
                "UPDATE entries SET usd = min(?, reserved_usd), tokens = min(?, reserved_tokens), "
                "state = ? WHERE id = ? AND state = 'reserved'",
                (max(0.0, usd), max(0, tokens), state, entry_id),
            )

        self._run(state, body)

    def pause(self, until: float) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if until > _meta(conn, "paused_until"):
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('paused_until', ?)", (until,)
                )

        self._run("pause", body)

    def paused_until(self) -> float:
        return float(self._run("read", lambda conn: _meta(conn, "paused_until"), write=False))

    def entries(self, since: float = -math.inf) -> list[Entry]:
        def body(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(
                "SELECT id, agent, at, usd, tokens, reserved_usd, state FROM entries "
                "WHERE at > ? ORDER BY at, id",
                (since if math.isfinite(since) else -1e300,),
            ).fetchall()
            return [Entry(*row) for row in rows]

        return list(self._run("read", body, write=False))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None


def _meta(conn: sqlite3.Connection, key: str) -> float:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None:
        return 0.0
    if not _sane(row[0]):
        raise LedgerUnavailable(f"corrupt ledger: meta {key}={row[0]!r}")
    return float(row[0])


# --- Redis: several hosts ----------------------------------------------------------------------

# KEYS: 1 clock, 2 paused_until, 3 id sequence, 4 entries by time (zset), 5 last calls (hash)
# ARGV: prefix for entry hashes, now, agent, usd, tokens, min_interval, retention, cap count,
#       then per cap: scope, window_s, unit, limit, reason
# Returns {status, id or reason, at, detail, reserved_1, settled_1, ...}, numbers as strings:
# Redis truncates Lua numbers to integers on the way out.
_RESERVE_LUA = """
local function fmt(x) return string.format('%.17g', x) end
local entry_prefix = ARGV[1]
local now = tonumber(ARGV[2])
local seen = redis.call('GET', KEYS[1])
if seen then
  seen = tonumber(seen)
  if not seen then return {'corrupt', 'clock'} end
  if seen > now then now = seen end
end
redis.call('SET', KEYS[1], fmt(now))
local agent = ARGV[3]
local usd = tonumber(ARGV[4])
local tokens = tonumber(ARGV[5])
local interval = tonumber(ARGV[6])
local retention = tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local caps = {}
local horizon = 0
for i = 1, n do
  local b = 9 + (i - 1) * 5
  local cap = {scope = ARGV[b], window = tonumber(ARGV[b + 1]), unit = ARGV[b + 2],
               limit = tonumber(ARGV[b + 3]), reason = ARGV[b + 4], reserved = 0, settled = 0}
  caps[i] = cap
  if cap.window > horizon then horizon = cap.window end
end
if retention < horizon then retention = horizon end
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now - retention))
for _, id in ipairs(old) do redis.call('DEL', entry_prefix .. id) end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(now - retention)) end
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. fmt(now - horizon), '+inf')
for _, id in ipairs(ids) do
  local e = redis.call('HMGET', entry_prefix .. id, 'agent', 'at', 'usd', 'tokens', 'state')
  local at, u, t = tonumber(e[2]), tonumber(e[3]), tonumber(e[4])
  if not at or not u or not t or u < 0 or t < 0 or u ~= u or t ~= t then
    return {'corrupt', 'entry ' .. id}
  end
  local open = (e[5] == 'reserved' or e[5] == 'kept')
  for _, cap in ipairs(caps) do
    if at > now - cap.window and (cap.scope == 'fleet' or e[1] == agent) then
      local amount = t
      if cap.unit == 'usd' then amount = u end
      if open then cap.reserved = cap.reserved + amount else cap.settled = cap.settled + amount end
    end
  end
end
local out = {}
for _, cap in ipairs(caps) do
  table.insert(out, fmt(cap.reserved))
  table.insert(out, fmt(cap.settled))
end
local function answer(status, what, detail)
  local result = {status, what, fmt(now), detail}
  for _, v in ipairs(out) do table.insert(result, v) end
  return result
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if not paused then return {'corrupt', 'paused_until'} end
if now < paused then return answer('refused', 'PAUSED', fmt(paused - now)) end
local last = redis.call('HGET', KEYS[5], agent)
if last then
  last = tonumber(last)
  if not last then return {'corrupt', 'last call'} end
  if now - last + 1e-6 < interval then
    return answer('refused', 'RATE', fmt(interval - (now - last)))
  end
end
for i, cap in ipairs(caps) do
  local amount = tokens
  if cap.unit == 'usd' then amount = usd end
  if cap.reserved + cap.settled + amount > cap.limit then
    return answer('refused', 'CAP', tostring(i))
  end
end
local id = redis.call('INCR', KEYS[3])
redis.call('HSET', entry_prefix .. id, 'agent', agent, 'at', fmt(now), 'usd', ARGV[4],
           'tokens', ARGV[5], 'reserved_usd', ARGV[4], 'reserved_tokens', ARGV[5],
           'state', 'reserved')
redis.call('ZADD', KEYS[4], fmt(now), id)
redis.call('HSET', KEYS[5], agent, fmt(now))
return answer('ok', tostring(id), '')
"""

# KEYS: 1 the entry hash. ARGV: usd, tokens, state.
_FINISH_LUA = """
if redis.call('HGET', KEYS[1], 'state') ~= 'reserved' then return 0 end
if ARGV[3] == 'kept' then
  redis.call('HSET', KEYS[1], 'state', 'kept')
  return 1
end
local ru = tonumber(redis.call('HGET', KEYS[1], 'reserved_usd'))
local rt = tonumber(redis.call('HGET', KEYS[1], 'reserved_tokens'))
local u = math.min(tonumber(ARGV[1]), ru)
local t = math.min(tonumber(ARGV[2]), rt)
redis.call('HSET', KEYS[1], 'usd', string.format('%.17g', u), 'tokens', tostring(t),
           'state', ARGV[3])
return 1
"""

# KEYS: 1 paused_until. ARGV: until.
_PAUSE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RedisLedger:
    """Sorted sets and hashes in Redis, checked and written by one Lua script per reservation.

    Every key starts with `{prefix}` (a hash tag), so on a Redis Cluster they share one slot
    and the script may touch entry hashes it finds through the sorted set.
    """

    def __init__(
        self,
        client: Any,
        prefix: str = "books-agents:budget",
        *,
        retention_s: float = DAY,
        description: str = "redis",
    ) -> None:
        import redis

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.client = client
        self.retention_s = retention_s
        self.description = description
        base = "{" + prefix + "}"
        self._keys = [
            f"{base}:clock",
            f"{base}:paused",
            f"{base}:seq",
            f"{base}:at",
            f"{base}:last",
        ]
        self._entry = f"{base}:e:"
        self._reserve = client.register_script(_RESERVE_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._pause = client.register_script(_PAUSE_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str, **kw: Any) -> RedisLedger:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            # One quick retry for a dropped connection; beyond that the call is refused (fail
            # closed) rather than held for redis-py's default ten retries with backoff.
            retry=Retry(NoBackoff(), 1),
        )
        kw.setdefault("description", f"redis prefix={prefix}")
        return cls(client, prefix, **kw)

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except self._errors as exc:
            # The exception text of a connection error names host and port, never the password.
            raise LedgerUnavailable(
                f"{self.description}: {what} failed ({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc

    def reserve(self, request: Request) -> Admission:
        args: list[Any] = [
            self._entry,
            repr(float(request.now)),
            request.agent,
            repr(float(request.usd)),
            str(int(request.tokens)),
            repr(float(request.min_interval_s)),
            repr(float(self.retention_s)),
            str(len(request.caps)),
        ]
        for cap in request.caps:
            args += [cap.scope, repr(cap.window_s), cap.unit, repr(float(cap.limit)), cap.reason]
        raw = self._call("reserve", self._reserve, keys=self._keys, args=args)
        reply = [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
        if reply[0] == "corrupt":
            raise LedgerUnavailable(f"{self.description}: corrupt ledger ({reply[1]})")
        at = float(reply[2])
        numbers = [float(v) for v in reply[4:]]
        usage = tuple(
            Usage(cap, numbers[2 * i], numbers[2 * i + 1]) for i, cap in enumerate(request.caps)
        )
        if reply[0] == "ok":
            return Admission(None, "", int(reply[1]), at, usage)
        kind, detail = reply[1], reply[3]
        if kind == "PAUSED":
            return Admission(
                API_SPEND_LIMIT,
                f"Anthropic's spend limit: paused for {float(detail):.0f}s",
                0,
                at,
                usage,
            )
        if kind == "RATE":
            return Admission(
                RATE_LIMITED, f"next call allowed in {float(detail):.1f}s", 0, at, usage
            )
        refusal = first_refusal(request, usage) or (request.caps[int(detail) - 1].reason, "")
        return Admission(refusal[0], refusal[1], 0, at, usage)

    def finish(self, entry_id: int, usd: float, tokens: int, state: State) -> None:
        self._call(
            state,
            self._finish,
            keys=[f"{self._entry}{entry_id}"],
            args=[repr(max(0.0, float(usd))), str(max(0, int(tokens))), state],
        )

    def pause(self, until: float) -> None:
        self._call("pause", self._pause, keys=[self._keys[1]], args=[repr(float(until))])

    def paused_until(self) -> float:
        value = self._call("read", self.client.get, self._keys[1])
        try:
            return float(value) if value is not None else 0.0
        except ValueError as exc:
            raise LedgerUnavailable(f"{self.description}: corrupt paused_until") from exc

    def entries(self, since: float = -math.inf) -> list[Entry]:
        low = "-inf" if not math.isfinite(since) else f"({since!r}"
        ids = self._call("read", self.client.zrangebyscore, self._keys[3], low, "+inf")
        pipe = self.client.pipeline(transaction=False)
        for raw_id in ids:
            pipe.hgetall(f"{self._entry}{raw_id.decode()}")
        found: list[Entry] = []
        for raw_id, data in zip(ids, self._call("read", pipe.execute), strict=True):
            values = {k.decode(): v.decode() for k, v in data.items()}
            if not values:
                continue  # pruned between the two reads
            try:
                found.append(
                    Entry(
                        int(raw_id),
                        values["agent"],
                        float(values["at"]),
                        float(values["usd"]),
                        int(float(values["tokens"])),
                        float(values["reserved_usd"]),
                        values["state"],
                    )
                )
            except (KeyError, ValueError) as exc:
                raise LedgerUnavailable(f"{self.description}: corrupt entry {raw_id!r}") from exc
        return sorted(found, key=lambda e: (e.at, e.id))

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self.client.close()


@dataclass
class LedgerChoice:
    ledger: Ledger
    why: str = field(default="")


def open_ledger(settings: CommonSettings) -> LedgerChoice:
    """Redis when BUDGET_REDIS_URL is set, else the SQLite file BUDGET_LEDGER. Opening is lazy:
    an unreachable ledger shows up as refused calls (fail closed), not as a crash at start-up."""
    if settings.budget_redis_url is not None:
        ledger: Ledger = RedisLedger.from_url(
            settings.budget_redis_url.get_secret_value(), settings.budget_redis_prefix
        )
        return LedgerChoice(ledger, "BUDGET_REDIS_URL is set: the fleet shares Redis")
    return LedgerChoice(
        SqliteLedger(settings.budget_ledger),
        f"BUDGET_LEDGER={settings.budget_ledger}: the agents of this machine share one file",
    )


def memory_ledger() -> SqliteLedger:
    return SqliteLedger(":memory:")
