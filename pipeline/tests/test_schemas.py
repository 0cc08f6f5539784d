"""The formats, described once in pipeline/mcs_pipeline/schemas/: everything the driver writes
matches them, every failure class it can produce is in them, and it reads back nothing else.

No Ray cluster: RunSummary and SummaryWriter run against a store in memory. (conftest.py checks
the plans it builds, and the summaries and pointers the driver tests read, against the same
files; test/schemas.test.ts and test/plan.test.ts hold the TypeScript side to them.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from mcs_pipeline import schemas
from mcs_pipeline.failures import RETRYABLE, Signals, classify
from mcs_pipeline.mcs_outputs import History
from mcs_pipeline.summary import Previous, RunSummary, SummaryWriter, find_previous, read_summary
from test_summary_writes import MemoryStore

KEY = "demo-eval/demo-eval_level2_demo_r1_run-summary.json"
LATEST = "demo-eval/demo-eval_level2_demo_latest-run.json"


def plan_doc(names, run_id="r1"):
    return {"run_id": run_id, "module": "demo", "metadata": "level2", "cluster_name": None,
            "store": "s3://bucket", "summary_key": KEY.replace("_r1_", f"_{run_id}_"),
            "latest_key": LATEST, "legacy_summary_key": "demo-eval/x_run-summary.json",
            "scenes": [{"name": n, "expected_cost": 10 + i} for i, n in enumerate(names)]}


def result(name, attempt=1, failure=None, outputs=True):
    """What run_scene returns; `outputs=False`: what failed_task_result returns (no outputs)."""
    prefix = f"demo-eval/demo-eval_level2_demo_{name}"
    return {"attempt": attempt, "exit_code": None if not outputs else (1 if failure else 0),
            "failure_class": failure, "duration_s": 1.5 if outputs else None,
            "node": "10.0.0.7" if outputs else None, "started_at": "2026-11-26T03:32:13.123Z",
            "outputs": {"history": None if failure else f"{prefix}.json",
                        "log": f"{prefix}_20261126-033213-123_log.txt",
                        "videos": [f"demo-eval-movies/{name}_visual.mp4"]} if outputs else None,
            "log_excerpt": "the end of the log" if failure else None}


def kind_of(key: str) -> tuple[str, str | None]:
    """The schema (file, definition) of a key the driver writes."""
    if key == LATEST:
        return schemas.RUN_SUMMARY, "pointer"
    if ".journal/" in key:
        return schemas.RUN_SUMMARY, "journalChunk"
    return schemas.RUN_SUMMARY, None


def test_the_schema_files_are_valid_draft_2020_12():
    for name in (schemas.PLAN, schemas.RUN_SUMMARY):
        Draft202012Validator.check_schema(schemas.load(name))


def test_every_document_the_summary_writer_writes_matches_the_schema():
    """A run with every kind of scene (success, retried, failed, lost node, resumed, pending),
    written on a timer with a journal, then finished, and a second one interrupted."""
    store = MemoryStore()
    names = ["ok", "retried", "failed", "lost", "pending"]
    summary = RunSummary(plan_doc(names))
    writer = SummaryWriter(store, summary, interval_s=0, budget=0)  # every change a chunk
    writer.save()
    store.put_bytes(LATEST, summary.pointer_bytes(find_previous(store, plan_doc(names))))
    writer.record("ok", result("ok"), final=True)
    writer.flush_if_due()
    writer.record("retried", result("retried", 1, "timeout"), final=False)
    writer.flush_if_due()
    writer.record("retried", result("retried", 2), final=True)
    writer.record("failed", result("failed", 1, "script_error"), final=True)
    writer.flush_if_due()
    writer.record("lost", result("lost", 1, "node_lost", outputs=False), final=True)
    writer.flush_if_due()
    chunks = sorted(k for k in store.objects if ".journal/" in k)
    assert len(chunks) == 4
    journalled = read_summary(store, KEY)  # the file behind, the journal applied
    assert [s["status"] for s in journalled["scenes"]] == \
        ["SUCCESS", "SUCCESS", "FAILED", "FAILED", "PENDING"]
    schemas.check(journalled, schemas.RUN_SUMMARY)
    summary.finish("finished")
    writer.save()

    # The next run resumes from it and is interrupted: the carried-over scenes, a pending one.
    previous = find_previous(store, plan_doc(names, "r2"))
    assert previous.run_id == "r1"
    second = RunSummary(plan_doc(names, "r2"), previous.summary)
    second_writer = SummaryWriter(store, second, interval_s=0, budget=0)
    second_writer.save()
    store.put_bytes(LATEST, second.pointer_bytes(previous))
    second_writer.record("failed", result("failed", 1, "xserver"), final=False)
    second_writer.flush_if_due()
    second.finish("interrupted")
    second_writer.save()

    assert len(store.objects) == 2 + len(chunks) + 1 + 1  # 2 summaries, 4 + 1 chunks, pointer
    for key, data in store.objects.items():
        schemas.check(json.loads(data), *kind_of(key))
    pointer = json.loads(store.objects[LATEST])
    assert pointer["previous"] == {"run_id": "r1", "summary_key": KEY}
    final = json.loads(store.objects[KEY])
    assert final["state"] == "finished" and final["journal"]["next"] == 5
    assert json.loads(store.objects[plan_doc(names, "r2")["summary_key"]])["state"] == \
        "interrupted"


def test_every_failure_class_the_driver_produces_is_in_the_schema_and_no_other():
    import ray.exceptions as rex

    from mcs_pipeline.driver import failed_task_result

    minus_one = History(Path("SCENE_HISTORY/s-20261203-101500.json"), "20261203-101500", "-1")

    produced = {
        *(classify(Signals(*signals)) for signals in (
            (None, True, "", None, True),                           # timeout
            (0, False, "", None, True),                             # missing_outputs
            (1, False, "cannot open display", None, True),          # xserver
            (137, False, "", None, True),                           # oom
            (1, False, "boom", None, True),                         # script_error
            (0, False, "boom", minus_one, True),                    # performer_crash
            (None, False, "", minus_one, True, True),               # inactivity
        )),
        "node_services",  # scene_task: the node's services did not start
        *(failed_task_result(error, 1)["failure_class"] for error in (
            rex.OutOfMemoryError("x"), rex.RayTaskError("f", "tb", ValueError("x")),
            rex.WorkerCrashedError(), rex.NodeDiedError("node"))),
    }
    enum = set(schemas.load(schemas.RUN_SUMMARY)["$defs"]["failureClass"]["enum"]) - {None}
    assert produced == enum
    assert RETRYABLE <= enum


def test_load_plan_refuses_a_plan_that_does_not_match(tmp_path, capsys):
    from mcs_pipeline.driver import load_plan

    (tmp_path / "plan.json").write_text(json.dumps(dict(plan_doc(["a"]), retries="2")))
    with pytest.raises(SystemExit) as exit_info:
        load_plan(tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/plan.json is not a plan: the document: 'schema_version' is a required" \
        " property (plan.schema.json#/required)" in err


def test_read_summary_names_the_field_and_the_schema_path():
    store = MemoryStore()
    summary = RunSummary(plan_doc(["a", "b"]))
    doc = json.loads(summary.to_bytes())
    doc["scenes"][1]["attempts"] = "1"
    store.put_bytes(KEY, json.dumps(doc).encode())
    with pytest.raises(ValueError) as error:
        read_summary(store, KEY)
    assert str(error.value) == (
        f"mem://{KEY} is not a run summary: scenes[1].attempts: '1' is not of type 'integer' "
        "(run-summary.schema.json#/$defs/count/type)")
    # A resume ignores it, and says why.
    store.put_bytes(LATEST, RunSummary(plan_doc(["a"])).pointer_bytes(Previous(None)))
    assert find_previous(store, plan_doc(["a"], "r2")) == Previous(None)
