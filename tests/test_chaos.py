"""The chaos lane, short: each fault once, every client checked (tests/chaos.py; the long runs
and their table are in docs/reliability.md). Latencies are printed with each result (p50, p99,
max), not asserted: they are measurements, and the long lane's table records them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import SCENARIOS, SHORT, print_result, run_scenario


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_no_silent_hole_under(name: str, server_url: str, tmp_path: Path) -> None:
    result = await run_scenario(SCENARIOS[name], SHORT, server_url=server_url, work_dir=tmp_path)
    print_result(result)
    assert result.deliveries > 0, "the scenario offered no events"
    assert result.missing == 0, f"silent holes: {result.row()}"
    assert result.misdelivered == 0, f"events received by someone they were not for: {result.row()}"
    assert result.unsettled == 0, f"clients whose position never reached the head: {result.row()}"
    assert result.received + result.told == result.deliveries
    if SCENARIOS[name].all_received:
        assert result.told == 0, result.row()
