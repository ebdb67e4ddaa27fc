"""Both job stores against the shared JobStore contract: SQLite in a temporary file, and the real
Redis on a private database (11) under a private key prefix that the test removes afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.jobs import JobStore, RedisJobStore, SQLiteJobStore
from tests.api.conftest import redis_available
from tests.contracts.job_store import JobStoreContract, MakeStore

REDIS_CONTRACT_URL = "redis://127.0.0.1:6379/11"


class TestSQLiteJobStore(JobStoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[MakeStore]:
        made: list[JobStore] = []

        def make(ttl_s: int, queue: str) -> JobStore:
            made.append(SQLiteJobStore(tmp_path / "jobs.sqlite", ttl_s, queue=queue))
            return made[-1]

        yield make
        for s in made:
            s.close()


@pytest.mark.redis
class TestRedisJobStore(JobStoreContract):
    @pytest.fixture
    def make_store(self) -> Iterator[MakeStore]:
        if not redis_available(REDIS_CONTRACT_URL):
            pytest.skip("Redis is not answering at 127.0.0.1:6379")
        prefix = f"contract-{uuid.uuid4().hex[:10]}:"
        made: list[RedisJobStore] = []

        def make(ttl_s: int, queue: str) -> JobStore:
            store = RedisJobStore(REDIS_CONTRACT_URL, ttl_s, queue=queue)
            store.prefix = prefix  # every key this test writes starts with it
            made.append(store)
            return store

        yield make
        if made:
            keys = list(made[0]._r.scan_iter(match=prefix + "*"))
            if keys:
                made[0]._r.delete(*keys)
        for s in made:
            s.close()
