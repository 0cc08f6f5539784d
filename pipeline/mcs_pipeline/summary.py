"""run-summary.json: the machine-readable record of a run, rewritten after every finished scene.

The report, a resume and the next run's scheduling read it; nothing scrapes the logs.
"""

from __future__ import annotations

import copy
import json

from .scene_task import utc_now

SCHEMA_VERSION = 1


def load_previous(store, key: str) -> dict | None:
    """The summary an earlier run left in the store, or None (absent or unreadable: say so)."""
    data = store.get_bytes(key)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        if doc.get("schema_version") == SCHEMA_VERSION and isinstance(doc.get("scenes"), list):
            return doc
    except ValueError:
        pass
    print(f"warning: ignoring unreadable previous summary {store.uri(key)}", flush=True)
    return None


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

    def to_bytes(self) -> bytes:
        self.doc["updated_at"] = utc_now()
        doc = dict(self.doc, totals=self.totals(), scenes=list(self.scenes.values()))
        return json.dumps(doc, indent=1).encode()
