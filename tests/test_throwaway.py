"""The throwaway servers really stop, restart on the same port, and keep (or lose) their data."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import redis

from tests.throwaway import ThrowawayPostgres, ThrowawayRedis


def test_postgres_restart_keeps_data_and_port_but_breaks_old_connections(tmp_path: Path) -> None:
    with ThrowawayPostgres(tmp_path) as pg:
        port = pg.port
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE survivors (id int PRIMARY KEY)")
            conn.execute("INSERT INTO survivors VALUES (1), (2)")
        old = psycopg.connect(pg.url, autocommit=True)
        try:
            started = time.monotonic()
            pg.restart(down_seconds=1)
            assert time.monotonic() - started >= 1
            with pytest.raises(psycopg.OperationalError):
                old.execute("SELECT 1")
        finally:
            old.close()
        assert pg.port == port
        assert pg.url == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(pg.url) as conn:
            rows = conn.execute("SELECT id FROM survivors ORDER BY id").fetchall()
        assert rows == [(1,), (2,)]
    assert not pg.is_running()
    assert not pg.root.exists()


def test_postgres_stop_refuses_connections_and_immediate_restart_recovers(tmp_path: Path) -> None:
    with ThrowawayPostgres(tmp_path) as pg:
        pg.stop(mode="immediate")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.url, connect_timeout=2).close()
        pg.start()
        pg.restart(mode="immediate")
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_migrate_creates_the_project_tables(tmp_path: Path) -> None:
    with ThrowawayPostgres(tmp_path) as pg:
        url = pg.create_database("family")
        assert url == pg.database_url("family")
        pg.migrate("family")
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT to_regclass('public.outbox_events')").fetchone()
            version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert found == ("outbox_events",)
        assert version is not None


def test_redis_restart_loses_data_and_serves_pubsub_and_stop_refuses(tmp_path: Path) -> None:
    with ThrowawayRedis(tmp_path) as server:
        port = server.port
        with redis.Redis.from_url(server.url) as client:
            client.set("key", "value")
            assert client.get("key") == b"value"
        server.restart(down_seconds=0.5)
        assert server.port == port
        with (
            redis.Redis.from_url(server.url) as subscriber_client,
            redis.Redis.from_url(server.url) as publisher,
        ):
            assert publisher.get("key") is None  # no RDB, no AOF: a restart empties it
            pubsub = subscriber_client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe("news")
                assert pubsub.get_message(timeout=1) is None  # drains the subscribe reply
                assert publisher.publish("news", "hello") == 1
                message = pubsub.get_message(timeout=5)
            finally:
                pubsub.close()
        assert message is not None
        assert message["data"] == b"hello"
        server.stop()
        with (
            redis.Redis.from_url(server.url, socket_connect_timeout=1) as client,
            pytest.raises(redis.ConnectionError),
        ):
            client.ping()
    assert server.process is not None
    assert server.process.poll() is not None
