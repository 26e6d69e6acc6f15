"""bench/publish.py at its smoke size: every mode's rows are there, and every story of the
simulated day reached its reader in every mode (no timing is asserted: the machine is
shared; the simulated day is the same for all four)."""

from __future__ import annotations

from bench import __main__ as runner


def test_publish_smoke() -> None:
    rows = {r["key"]: r for r in runner.run_in_process("publish", runner.SMOKE_ARGS["publish"])}
    modes = ("fixed", "adaptive", "ping", "websub")
    assert set(rows) == {f"publish_{m}" for m in modes} | {f"publish_{m}_requests" for m in modes}
    stories = {rows[f"publish_{m}"]["detail"]["stories"] for m in modes}
    assert len(stories) == 1 and stories.pop() > 0  # one day, the same stories
    for mode in modes:
        detail = rows[f"publish_{mode}"]["detail"]
        assert detail["missed"] == 0, (mode, detail)
        assert rows[f"publish_{mode}_requests"]["value"] > 0
    assert rows["publish_websub"]["detail"]["subscriptions_verified"] == 6  # every feed subscribed
    assert rows["publish_ping"]["detail"]["processing_p50"] is not None
