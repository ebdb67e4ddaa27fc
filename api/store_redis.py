"""The Redis job store (production): jobs as hashes, per-queue indexes as sorted sets.

A job is a hash with one JSON value per field, so concurrent field writes never clobber each other.
Per queue (several deployments may share one database): ``queued`` and ``running`` indexes (queue
positions, recovery of running jobs whose lease lapsed), the dispatch ``outbox``, worker heartbeats
and statistics. Conditional changes (start, cancel, take back) are Lua scripts, so they are atomic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from api.jobs import TERMINAL, Job, JobStore, bucket_of, progress_of, steps_from_flat, unavailable

# KEYS[1] job hash; ARGV[1] n of from-states, ARGV[2..n+1] the states (JSON), then field/value pairs.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
local n = tonumber(ARGV[1])
local ok = false
for i = 2, n + 1 do if ARGV[i] == cur then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, n + 2))
return 1
"""
# KEYS[1] job hash; ARGV[1] now (JSON). 2: a queued job was cancelled; 1: a running job was asked to stop.
_CANCEL = """
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == '"queued"' then
  redis.call('HSET', KEYS[1], 'status', '"cancelled"', 'cancel_requested', 'true', 'finished_at', ARGV[1],
             'updated_at', ARGV[1])
  return 2
elseif cur == '"running"' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 'true', 'updated_at', ARGV[1])
  return 1
end
return 0
"""
# KEYS[1] job hash, KEYS[2] lease key; ARGV[1] cutoff (updated_at before it), ARGV[2] now (JSON).
# Takes back a running job nobody holds a lease on: 1 if taken.
_TAKE_BACK = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= '"running"' then return 0 end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated_at') or '0')
if updated > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', '"queued"', 'updated_at', ARGV[2])
return 1
"""
# KEYS[1] outbox; ARGV[1] now, ARGV[2] limit, ARGV[3] next due time: claims due ids.
_TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisJobStore(JobStore):
    """Jobs as Redis hashes; queue indexes, outbox, heartbeats and statistics per queue."""

    prefix = "openscholar:"

    def __init__(self, url: str, ttl_s: int, queue: str = "openscholar") -> None:
        import redis

        self.ttl_s = ttl_s
        self.queue = queue
        self._r = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10, retry_on_timeout=False
        )
        self._scripts = {name: self._r.register_script(src) for name, src in (
            ("transition", _TRANSITION), ("cancel", _CANCEL), ("take_back", _TAKE_BACK), ("take_due", _TAKE_DUE),
            ("renew", _RENEW), ("release", _RELEASE))}

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _q(self, name: str) -> str:
        return self._k("q", self.queue, name)

    def _index(self, pipe: Any, job_id: str, status: str, now: float) -> None:
        """Keep the queued/running indexes in step with a job's status."""
        if status == "queued":
            pipe.zadd(self._q("queued"), {job_id: now})
            pipe.zrem(self._q("running"), job_id)
        elif status == "running":
            pipe.zrem(self._q("queued"), job_id)
            pipe.zadd(self._q("running"), {job_id: now})
        elif status in TERMINAL:
            pipe.zrem(self._q("queued"), job_id)
            pipe.zrem(self._q("running"), job_id)

    @unavailable
    def ping(self) -> None:
        self._r.ping()

    @unavailable
    def create(self, jobs: list[Job], batch_id: str | None = None, owner: str = "",
               dispatch_in_s: float = 30.0) -> None:
        now = time.time()
        pipe = self._r.pipeline(transaction=True)
        for job in jobs:
            key = self._k("job", job.id)
            pipe.hset(key, mapping={k: json.dumps(v) for k, v in job.model_dump(mode="json").items()})
            pipe.expire(key, self.ttl_s)
        if jobs:
            pipe.zadd(self._q("queued"), {j.id: j.created_at for j in jobs})
            pipe.zadd(self._q("outbox"), {j.id: now + dispatch_in_s for j in jobs})
        if batch_id is not None:
            bkey = self._k("batch", batch_id)
            pipe.hset(bkey, mapping={"id": json.dumps(batch_id), "owner": json.dumps(owner),
                                     "created_at": json.dumps(now), "total": json.dumps(len(jobs))})
            pipe.expire(bkey, self.ttl_s)
            lkey = self._k("batch", batch_id, "jobs")
            for i in range(0, len(jobs), 500):
                pipe.rpush(lkey, *[j.id for j in jobs[i : i + 500]])
            pipe.expire(lkey, self.ttl_s)
        pipe.execute()

    @staticmethod
    def _decode(raw: Any) -> Job | None:
        if not raw or b"id" not in raw:
            return None
        return Job.model_validate({k.decode(): json.loads(v) for k, v in raw.items()})

    @unavailable
    def get(self, job_id: str) -> Job | None:
        return self._decode(self._r.hgetall(self._k("job", job_id)))

    @unavailable
    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        out: list[Job | None] = []
        for i in range(0, len(job_ids), 200):
            pipe = self._r.pipeline(transaction=False)
            for jid in job_ids[i : i + 200]:
                pipe.hgetall(self._k("job", jid))
            out.extend(self._decode(raw) for raw in pipe.execute())
        return out

    @unavailable
    def update(self, job_id: str, **fields: Any) -> None:
        now = time.time()
        fields["updated_at"] = now
        key = self._k("job", job_id)
        if not self._r.exists(key):
            return
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in fields.items()})
        if "status" in fields:
            self._index(pipe, job_id, fields["status"], now)
        pipe.execute()

    @unavailable
    def transition(self, job_id: str, from_states: Iterable[str], **fields: Any) -> bool:
        now = time.time()
        fields["updated_at"] = now
        states = [json.dumps(s) for s in from_states]
        args: list[Any] = [len(states), *states]
        for k, v in fields.items():
            args += [k, json.dumps(v)]
        ok = bool(self._scripts["transition"](keys=[self._k("job", job_id)], args=args))
        if ok and "status" in fields:
            pipe = self._r.pipeline(transaction=False)
            self._index(pipe, job_id, fields["status"], now)
            pipe.execute()
        return ok

    @unavailable
    def cancel(self, job_ids: list[str]) -> list[Job | None]:
        now = time.time()
        for i in range(0, len(job_ids), 200):
            chunk = job_ids[i : i + 200]
            pipe = self._r.pipeline(transaction=False)
            for jid in chunk:
                self._scripts["cancel"](keys=[self._k("job", jid)], args=[json.dumps(now)], client=pipe)
            done = pipe.execute()
            pipe = self._r.pipeline(transaction=False)
            for jid, code in zip(chunk, done, strict=True):
                if code == 2:
                    self._index(pipe, jid, "cancelled", now)
            pipe.execute()
        return self.get_many(job_ids)

    @unavailable
    def add_event(self, job_id: str, event: dict[str, Any]) -> int:
        key = self._k("job", job_id, "events")
        pipe = self._r.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(event))
        pipe.expire(key, self.ttl_s)
        n = int(pipe.execute()[0])
        self.update(job_id, events=n, progress=progress_of(event, n))
        return n

    @unavailable
    def events(self, job_id: str, start: int = 0) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self._r.lrange(self._k("job", job_id, "events"), start, -1)]

    @unavailable
    def batch(self, batch_id: str) -> dict[str, Any] | None:
        raw: Any = self._r.hgetall(self._k("batch", batch_id))
        if not raw:
            return None
        info = {k.decode(): json.loads(v) for k, v in raw.items()}
        ids: Any = self._r.lrange(self._k("batch", batch_id, "jobs"), 0, -1)
        info["job_ids"] = [j.decode() for j in ids]
        return info

    # -- queue positions and the dispatch outbox ---------------------------------------------
    @unavailable
    def queue_position(self, job_id: str) -> int | None:
        rank = self._r.zrank(self._q("queued"), job_id)
        return None if rank is None else int(rank) + 1  # type: ignore[arg-type]

    @unavailable
    def queue_depth(self) -> int:
        return int(self._r.zcard(self._q("queued")))  # type: ignore[arg-type]

    @unavailable
    def mark_dispatched(self, job_ids: list[str]) -> None:
        for i in range(0, len(job_ids), 500):
            self._r.zrem(self._q("outbox"), *job_ids[i : i + 500])

    @unavailable
    def mark_undispatched(self, job_ids: list[str], due_in_s: float) -> None:
        if job_ids:
            self._r.zadd(self._q("outbox"), dict.fromkeys(job_ids, time.time() + due_in_s))

    @unavailable
    def take_undispatched(self, limit: int, retry_in_s: float) -> list[str]:
        now = time.time()
        ids: Any = self._scripts["take_due"](keys=[self._q("outbox")], args=[now, limit, now + retry_in_s])
        return [i.decode() for i in ids]

    # -- leases and recovery -----------------------------------------------------------------
    @unavailable
    def acquire_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        return bool(self._r.set(self._k("lease", job_id), owner, nx=True, px=int(ttl_s * 1000)))

    @unavailable
    def renew_lease(self, job_id: str, owner: str, ttl_s: float) -> bool:
        return bool(self._scripts["renew"](keys=[self._k("lease", job_id)], args=[owner, int(ttl_s * 1000)]))

    @unavailable
    def release_lease(self, job_id: str, owner: str) -> None:
        self._scripts["release"](keys=[self._k("lease", job_id)], args=[owner])

    @unavailable
    def take_expired_leases(self, grace_s: float, limit: int = 100) -> list[str]:
        now = time.time()
        running: Any = self._r.zrange(self._q("running"), 0, limit - 1)
        taken = []
        for raw in running:
            jid = raw.decode()
            if not self._r.exists(self._k("job", jid)):
                self._r.zrem(self._q("running"), jid)  # expired meanwhile
                continue
            if self._scripts["take_back"](keys=[self._k("job", jid), self._k("lease", jid)],
                                          args=[now - grace_s, json.dumps(now)]):
                pipe = self._r.pipeline(transaction=False)
                self._index(pipe, jid, "queued", now)
                pipe.execute()
                taken.append(jid)
        return taken

    # -- workers and statistics --------------------------------------------------------------
    @unavailable
    def heartbeat(self, worker: str, info: dict[str, Any]) -> None:
        self._r.hset(self._q("workers"), worker, json.dumps({**info, "seen": time.time()}))

    @unavailable
    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        raw: Any = self._r.hgetall(self._q("workers"))
        for name, value in raw.items():
            info = json.loads(value)
            if now - info.get("seen", 0) > 24 * 3600:
                self._r.hdel(self._q("workers"), name)
                continue
            out.append({"worker": name.decode(), **info, "age_s": round(now - info.get("seen", 0), 1)})
        return sorted(out, key=lambda w: w["age_s"])

    @unavailable
    def record_outcome(self, status: str) -> None:
        self._r.hincrby(self._q("outcomes"), status, 1)

    @unavailable
    def observe_step(self, step: str, seconds: float) -> None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(self._q("steps"), f"{step}|{bucket_of(seconds)}", 1)
        pipe.hincrbyfloat(self._q("steps"), f"{step}|sum", seconds)
        pipe.execute()

    @unavailable
    def stats(self) -> dict[str, Any]:
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(self._q("outcomes"))
        pipe.hgetall(self._q("steps"))
        pipe.zcard(self._q("queued"))
        pipe.zcard(self._q("running"))
        outcomes, steps, queued, running = pipe.execute()
        return {"outcomes": {k.decode(): int(v) for k, v in outcomes.items()},
                "steps": steps_from_flat({k.decode(): float(v) for k, v in steps.items()}),
                "queued": int(queued), "running": int(running)}

    def close(self) -> None:
        self._r.close()


__all__ = ["RedisJobStore"]
