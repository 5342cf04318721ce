"""Every index on ``outbox_events`` earns its keep on the delivery path.

Each event is written once and marked delivered once, and each index it lives in costs both:
the insert adds an entry to every index whose predicate it meets, and the mark, which changes
``status`` (so it cannot be a HOT update), adds another. An index only operators' filters would
use is paid for by every event; those filters may scan instead. The queries of the write and
drain paths and of the housekeeping jobs must, in turn, be servable without scanning the table.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from app.outbox import queries

# Mostly delivered rows, as in a running system: a few pending, a few dead.
SEED = """
WITH event AS (
    INSERT INTO outbox_events (type, version, payload, status, delivered_at)
    SELECT 'task.created', 1, '{}',
           CASE WHEN n % 1000 = 0 THEN 'dead' WHEN n > 19900 THEN 'pending' ELSE 'delivered' END,
           now() - make_interval(secs => 20000 - n)
    FROM generate_series(1, 20000) AS n
    RETURNING id
)
INSERT INTO outbox_recipients (event_id, stream, seq)
SELECT id, 'user:' || (id % 100), id FROM event
"""

CUTOFF = datetime.now(UTC) - timedelta(seconds=10000)

DELIVERY_PATH: dict[str, tuple[sql.Composable | str, dict[str, Any]]] = {
    "claim": (
        queries.CLAIM_BATCH,
        {"limit": 200, "owner": "test", "token": uuid.uuid4(), "lease_seconds": 30},
    ),
    "mark delivered": (queries.MARK_DELIVERED, {"ids": [19950, 19951], "token": uuid.uuid4()}),
    "earlier in flight": (
        queries.EARLIER_IN_FLIGHT,
        {
            "max_id": 19990,
            "streams": ["user:90"],
            "hold_seconds": 30,
            "lease_seconds": 30,
        },
    ),
    "catch-up": (queries.CATCH_UP, {"stream": "user:5", "after": 19000, "limit": 500}),
    "backlog gauges": (queries.BACKLOG_GAUGES, {}),
    # A purge batch (1,000 rows) when about half the rows are past the retention window.
    "purge": (queries.PURGE_DELIVERED, {"cutoff": CUTOFF, "batch": 1000}),
}


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """A plan node and all nodes under it."""
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


async def test_every_outbox_index_serves_the_delivery_path_which_never_scans(
    database_url: str,
) -> None:
    used: set[str] = set()
    scans: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED)
        await conn.execute("ANALYZE outbox_events, outbox_recipients")
        # On a table this small a scan is the cheaper plan; what must hold is that each query
        # has a plan without one, which the planner takes once the table is large.
        await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'outbox_events'"
        )
        indexes = {name for (name,) in await cur.fetchall()}
        for name, (query, params) in DELIVERY_PATH.items():
            statement = sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(query)
            cur = await conn.execute(statement, params)
            [plan] = await cur.fetchone() or [None]
            for node in plan_nodes(plan[0]["Plan"]):
                if "Index Name" in node:
                    used.add(node["Index Name"])
                if node["Node Type"] == "Seq Scan" and node["Relation Name"] == "outbox_events":
                    scans.append(f"{name}: {json.dumps(plan)[:2000]}")
    assert indexes - used == set(), "indexes the delivery path never uses"
    assert scans == []
