"""What the cluster keeps in Redis: key names, the two Lua scripts, the connections.

Keys (one Redis, one database; every name starts with `lestats:`):
    next_id          the id counter (INCR)
    job:<id>         hash: state (running/done/error), endpoint, question, location,
                     fingerprint, and once finished the complete get_results body
    running          sorted set of running ids (score = id): /api/num_jobs, max_queue
    finished         sorted set of retained finished ids: retention evicts its lowest
    failed           set of the finished ids whose state is "error" (for /api/jobs)
    cluster          hash: fingerprint of the cluster's data, max_results
    jobs:<fingerprint>  the stream workers read, consumer group "workers"; one stream
                     per dataset fingerprint, so a worker only ever sees jobs asked
                     against the data it holds
    done             pub/sub channel: "<id>:<1|0>,..." per finished batch

The scripts make each step one atomic round trip: SUBMIT (INCR → HSET → ZADD → XADD)
before the client's 200, FINISH (result → state → XACK → XDEL → retention → PUBLISH)
after a worker's batch. Both name job keys they build themselves, which a single
Redis allows (a Redis Cluster would not; this design targets one primary).
"""

from __future__ import annotations

from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# What a Redis call raises when Redis is gone or restarting. Under uvloop a write on a
# connection Redis has just closed raises RuntimeError ("unable to perform operation
# on <TCPTransport closed=True>"), not ConnectionError: without it here, a POST during
# a Redis restart was a 500 instead of a 503 with Retry-After.
UNREACHABLE = (RedisError, OSError, RuntimeError)

PREFIX = "lestats:"
NEXT_ID = PREFIX + "next_id"
JOB = PREFIX + "job:"
RUNNING = PREFIX + "running"
FINISHED = PREFIX + "finished"
FAILED = PREFIX + "failed"
META = PREFIX + "cluster"
CHANNEL = PREFIX + "done"
GROUP = "workers"

# Bounded socket timeouts: with Redis gone or stalled, a request fails within about a
# second (503) instead of hanging; one immediate retry covers a pooled connection that
# died with a Redis restart.
SOCKET_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1.0
HEALTH_CHECK = 5


def stream(fingerprint: str) -> str:
    return f"{PREFIX}jobs:{fingerprint}"


def job_key(job_id: int | str) -> str:
    return f"{JOB}{job_id}"


# KEYS: next_id, running, finished, stream
# ARGV: endpoint, question, location ("" = none), fingerprint, floor, max_queue, JOB,
# years ("START:END", either part empty)
# Returns the new id, or 0 when max_queue jobs are already running.
# The id is above the counter, above `floor` (the highest id the calling front-end has
# seen) and above every id still known: after an AOF restore or a failover that lost
# the counter's last increments, no id is handed out twice.
def years_field(year_start: int | None, year_end: int | None) -> str:
    """A job's year range as one stream field: "START:END", either part empty."""
    return f"{'' if year_start is None else year_start}:{'' if year_end is None else year_end}"


def parse_years(field: bytes | None) -> tuple[int | None, int | None]:
    start, _, end = (field or b":").decode().partition(":")
    return (int(start) if start else None, int(end) if end else None)


SUBMIT = """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return 0 end
local id = redis.call('INCR', KEYS[1])
local highest = tonumber(ARGV[5])
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local top = redis.call('ZRANGE', key, 0, 0, 'REV', 'WITHSCORES')
  if top[2] and tonumber(top[2]) > highest then highest = tonumber(top[2]) end
end
if id <= highest then
  id = highest + 1
  redis.call('SET', KEYS[1], id)
end
redis.call('HSET', ARGV[7] .. id, 'state', 'running', 'endpoint', ARGV[1],
           'question', ARGV[2], 'location', ARGV[3], 'fingerprint', ARGV[4],
           'years', ARGV[8])
redis.call('ZADD', KEYS[2], id, id)
redis.call('XADD', KEYS[4], '*', 'id', id, 'endpoint', ARGV[1], 'question', ARGV[2],
           'location', ARGV[3], 'years', ARGV[8])
return id
"""

# KEYS: stream, running, finished, failed, cluster, done channel
# ARGV: group, JOB, default max_results, then (entry id, job id, ok 1|0, body) per job
# A job is written only while it is still running: a second run of the same job (a
# reclaimed entry whose first worker woke up) changes nothing, and a job evicted in
# between is not brought back. Every entry is acknowledged and deleted from the
# stream, so the stream holds only jobs not yet finished. Returns the count written.
FINISH = """
local written = {}
for i = 4, #ARGV, 4 do
  local id, ok = ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[2] .. id
  if redis.call('HGET', key, 'state') == 'running' then
    redis.call('HSET', key, 'state', ok == '1' and 'done' or 'error', 'body', ARGV[i + 3])
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[3], id, id)
    if ok ~= '1' then redis.call('SADD', KEYS[4], id) end
    written[#written + 1] = id .. ':' .. ok
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
local limit = tonumber(redis.call('HGET', KEYS[5], 'max_results') or ARGV[3])
local excess = redis.call('ZCARD', KEYS[3]) - limit
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[3], excess)
  for i = 1, #popped, 2 do
    redis.call('DEL', ARGV[2] .. popped[i])
    redis.call('SREM', KEYS[4], popped[i])
  end
end
if #written > 0 then redis.call('PUBLISH', KEYS[6], table.concat(written, ',')) end
return #written
"""


def finish_keys(fingerprint: str) -> list[str]:
    return [stream(fingerprint), RUNNING, FINISHED, FAILED, META, CHANNEL]


def client_options(retry_class) -> dict:
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK,
        "retry": retry_class(NoBackoff(), 1),
    }


def async_client(url: str):
    """The front-end's client (redis.asyncio over hiredis)."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry

    return Redis.from_url(url, **client_options(Retry))


def sync_client(url: str, socket_timeout: float = SOCKET_TIMEOUT):
    """A worker process's client; its blocking reads need a longer socket timeout."""
    from redis import Redis
    from redis.retry import Retry

    return Redis.from_url(url, **{**client_options(Retry), "socket_timeout": socket_timeout})


def register_cluster(client, fingerprint: str):
    """Record `fingerprint` as the cluster's data unless one is recorded already;
    returns the cluster's fingerprint (sync or async client: the caller awaits)."""
    return client.eval(
        "redis.call('HSETNX', KEYS[1], 'fingerprint', ARGV[1]) "
        "return redis.call('HGET', KEYS[1], 'fingerprint')",
        1,
        META,
        fingerprint,
    )


def describe(url: str) -> str:
    """The URL without a password, for logs."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
