"""What the summary carries for the report (no Ray): each scene's category from the plan, and the
previous run of the module and level, which the report compares with."""

from __future__ import annotations

import json

from mcs_pipeline import schemas
from mcs_pipeline.store import LocalStore
from mcs_pipeline.summary import Previous, RunSummary, find_previous


def plan_doc(run_id: str, categories: dict) -> dict:
    """A plan whose scenes carry `category` as src/plan.ts writes it (goal.category or None)."""
    return {"run_id": run_id, "module": "demo", "metadata": "level2", "cluster_name": None,
            "store": "/tmp/store", "summary_key": f"f/p_{run_id}_run-summary.json",
            "latest_key": "f/p_latest-run.json", "legacy_summary_key": "f/p_run-summary.json",
            "scenes": [{"name": n, "file": f"scenes/{n}.json", "expected_cost": 10,
                        "category": c} for n, c in categories.items()]}


def success(attempt: int = 1) -> dict:
    return {"attempt": attempt, "exit_code": 0, "failure_class": None, "duration_s": 1.5,
            "node": "10.0.0.1", "started_at": "2026-01-01T00:00:00.000Z",
            "outputs": {"history": "f/h.json", "log": "f/l.txt", "videos": []},
            "log_excerpt": None}


def test_each_scene_carries_its_plans_category_pending_or_recorded():
    summary = RunSummary(plan_doc("r1", {"a": "intuitive physics", "b": "retrieval", "c": None}))
    summary.record("a", success(), final=True)
    doc = json.loads(summary.to_bytes())
    schemas.check(doc, schemas.RUN_SUMMARY)
    assert {s["name"]: s["category"] for s in doc["scenes"]} == \
        {"a": "intuitive physics", "b": "retrieval", "c": None}
    assert doc["previous"] is None  # no previous run given


def test_a_resumed_scene_takes_this_plans_category_not_the_old_summarys():
    first = RunSummary(plan_doc("r1", {"a": None}))
    first.record("a", success(), final=True)
    second = RunSummary(plan_doc("r2", {"a": "agents"}), json.loads(first.to_bytes()))
    assert second.scenes["a"]["resumed"] is True and second.scenes["a"]["category"] == "agents"


def test_the_summary_names_the_previous_run_the_pointer_named(tmp_path):
    store = LocalStore(str(tmp_path))
    first = RunSummary(plan_doc("r1", {"a": "retrieval"}))
    store.put_bytes(first.doc["summary_key"], first.to_bytes())
    store.put_bytes("f/p_latest-run.json", first.pointer_bytes(Previous(None)))

    plan = plan_doc("r2", {"a": "retrieval"})
    previous = find_previous(store, plan)
    second = RunSummary(plan, previous_run=previous)
    doc = json.loads(second.to_bytes())
    schemas.check(doc, schemas.RUN_SUMMARY)
    assert doc["previous"] == {"run_id": "r1", "summary_key": "f/p_r1_run-summary.json"}
    # The pointer names the same previous run.
    assert json.loads(second.pointer_bytes(previous))["previous"] == doc["previous"]


def test_an_older_summary_without_category_or_previous_is_still_valid():
    doc = json.loads(RunSummary(plan_doc("r1", {"a": None})).to_bytes())
    del doc["previous"]
    for scene in doc["scenes"]:
        del scene["category"]
    assert schemas.problem(doc, schemas.RUN_SUMMARY) is None
