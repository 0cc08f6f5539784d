"""run-summary.json: the machine-readable record of a run, rewritten after every finished scene.

The report, a resume and the next run's scheduling read it; nothing scrapes the logs. Each run
has its own summary (`<folder>/<prefix>_<run id>_run-summary.json`); a small pointer per module
and level (`<folder>/<prefix>_latest-run.json`, replaced whole) names the latest run, and is how
the next run finds the previous one.
"""

from __future__ import annotations

import copy
import json
from typing import NamedTuple

from .scene_task import utc_now

SCHEMA_VERSION = 1


class Previous(NamedTuple):
    """The run before this one, as the store knows it (all None when there is none)."""

    summary: dict | None
    run_id: str | None = None
    key: str | None = None
    legacy: bool = False

    def describe(self, store, resume: bool) -> str:
        """For the driver's start line: which run this one resumes from (or schedules by)."""
        if self.summary is None:
            return "no previous run" + (" to resume from" if resume else "")
        where = store.uri(self.key) + (", the legacy shared key" if self.legacy else "")
        return f"{'resuming from' if resume else 'previous'} run {self.run_id} ({where})"


def find_previous(store, plan: dict) -> Previous:
    """The previous run of this module and level: the one the latest-run pointer names, else (a
    store from before the pointer existed) the summary at the legacy shared key. Never this run's
    own summary: a driver started again on the same plan follows the pointer's `previous`."""
    own = plan["run_id"]
    data = store.get_bytes(plan["latest_key"])
    if data is None:
        doc = load_summary(store, plan["legacy_summary_key"], own)
        return (Previous(doc, doc["run_id"], plan["legacy_summary_key"], legacy=True) if doc
                else Previous(None))
    pointer = read_pointer(data)
    if pointer is None:
        warn(f"ignoring unreadable run pointer {store.uri(plan['latest_key'])}")
        return Previous(None)
    if pointer["run_id"] == own:
        pointer = read_pointer(pointer.get("previous"))
        if pointer is None:
            return Previous(None)
    doc = load_summary(store, pointer["summary_key"], own)
    return Previous(doc, doc["run_id"], pointer["summary_key"]) if doc else Previous(None)


def read_pointer(data) -> dict | None:
    """A pointer's `{run_id, summary_key, ...}` (bytes, or the dict nested as `previous`)."""
    try:
        doc = json.loads(data) if isinstance(data, (bytes, str)) else data
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("run_id"), str) \
            and isinstance(doc.get("summary_key"), str):
        return doc
    return None


def load_summary(store, key: str, own_run_id: str) -> dict | None:
    """The summary at `key`, or None: absent, unreadable or this run's own (the last two said)."""
    data = store.get_bytes(key)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not (isinstance(doc, dict) and doc.get("schema_version") == SCHEMA_VERSION
            and isinstance(doc.get("scenes"), list) and isinstance(doc.get("run_id"), str)):
        warn(f"ignoring unreadable previous summary {store.uri(key)}")
        return None
    if doc["run_id"] == own_run_id:
        warn(f"ignoring {store.uri(key)}: it is this run's own summary, not a previous run's")
        return None
    return doc


def warn(text: str) -> None:
    print(f"warning: {text}", flush=True)


def pending_scene(name: str, expected_cost: float) -> dict:
    return {
        "name": name,
        "status": "PENDING",
        "attempts": 0,
        "exit_code": None,
        "failure_class": None,
        "duration_s": None,
        "node": None,
        "expected_cost": expected_cost,
        "resumed": False,
        "outputs": {"history": None, "log": None, "videos": []},
        "log_excerpt": None,
        "history": [],
    }


class RunSummary:
    def __init__(self, plan: dict, previous: dict | None = None):
        """`previous` (a resume): its SUCCESS scenes are carried over and not run again."""
        done = {s["name"]: s for s in (previous or {}).get("scenes", []) if s["status"] == "SUCCESS"}
        self.scenes: dict[str, dict] = {}
        for scene in plan["scenes"]:
            carried = done.get(scene["name"])
            if carried:
                self.scenes[scene["name"]] = dict(copy.deepcopy(carried), resumed=True)
            else:
                self.scenes[scene["name"]] = pending_scene(scene["name"], scene["expected_cost"])
        now = utc_now()
        self.doc = {
            "schema_version": SCHEMA_VERSION,
            "run_id": plan["run_id"],
            "module": plan["module"],
            "metadata": plan["metadata"],
            "cluster_name": plan.get("cluster_name"),
            "store": plan["store"],
            "summary_key": plan["summary_key"],
            "state": "running",
            "started_at": now,
            "updated_at": now,
            "finished_at": None,
        }

    def pending(self) -> list[str]:
        return [name for name, s in self.scenes.items() if s["status"] == "PENDING"]

    def record(self, name: str, result: dict, final: bool) -> None:
        """Add an attempt; a final one (success, or no retry left) settles the scene."""
        scene = self.scenes[name]
        scene["attempts"] += 1
        attempt = {k: result.get(k) for k in ("attempt", "exit_code", "failure_class",
                                              "duration_s", "node", "started_at")}
        attempt["log"] = (result.get("outputs") or {}).get("log")
        scene["history"].append(attempt)
        if final:
            scene.update(
                status="FAILED" if result["failure_class"] else "SUCCESS",
                exit_code=result.get("exit_code"),
                failure_class=result["failure_class"],
                duration_s=result.get("duration_s"),
                node=result.get("node"),
                outputs=result.get("outputs") or scene["outputs"],
                log_excerpt=result.get("log_excerpt"),
            )

    def totals(self) -> dict:
        statuses = [s["status"] for s in self.scenes.values()]
        return {
            "total": len(statuses),
            "succeeded": statuses.count("SUCCESS"),
            "failed": statuses.count("FAILED"),
            "pending": statuses.count("PENDING"),
            "retried": sum(1 for s in self.scenes.values() if s["attempts"] > 1),
        }

    def finish(self, state: str) -> None:
        self.doc["state"] = state
        self.doc["finished_at"] = utc_now()

    def pointer_bytes(self, previous: Previous) -> bytes:
        """The latest-run pointer naming this run (and the run it followed)."""
        return json.dumps({
            "schema_version": SCHEMA_VERSION,
            "run_id": self.doc["run_id"],
            "module": self.doc["module"],
            "metadata": self.doc["metadata"],
            "summary_key": self.doc["summary_key"],
            "started_at": self.doc["started_at"],
            "previous": ({"run_id": previous.run_id, "summary_key": previous.key}
                         if previous.summary else None),
        }, indent=1).encode()

    def to_bytes(self) -> bytes:
        self.doc["updated_at"] = utc_now()
        doc = dict(self.doc, totals=self.totals(), scenes=list(self.scenes.values()))
        return json.dumps(doc, indent=1).encode()
