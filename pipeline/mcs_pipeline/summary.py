"""run-summary.json: the machine-readable record of a run, kept on the store as scenes finish.

The report, a resume and the next run's scheduling read it; nothing scrapes the logs. Each run
has its own summary (`<folder>/<prefix>_<run id>_run-summary.json`); a small pointer per module
and level (`<folder>/<prefix>_latest-run.json`, replaced whole) names the latest run, and is how
the next run finds the previous one.

Writing it stays cheap at 10,000 scenes (SummaryWriter): the driver does not rewrite the whole
file per finished scene. At most every SUMMARY_INTERVAL_S it writes what changed, either the
whole file again (while rewrites stay within FILE_BUDGET_PER_ATTEMPT bytes per recorded attempt:
always for small runs) or else a journal chunk holding only the scenes that changed. The file
names its journal (`journal`: `prefix`, `next`): the chunks `<prefix><n:06d>.json` from `next` on
are newer than the file. When the driver ends, finished or interrupted, it writes the whole file
with everything in it; read_summary (and the report, src/summary.ts) apply the chunks for a
summary read mid-run or left by a driver that was killed (a resume reads summaries through it).

The formats are described once, in schemas/run-summary.schema.json (the file, the journal chunks
and the pointer), which the TypeScript side validates against too.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import NamedTuple

from . import schemas
from .scene_task import utc_now

SCHEMA_VERSION = 1
# The summary on the store is at most this far behind a finished scene, plus one write: within
# the 15 s the driver promises, with a margin for a slow PUT.
SUMMARY_INTERVAL_S = 10.0
# Bytes of whole-file rewrites during a run (not the first and last) per recorded attempt. A
# file of 10,000 scenes is 5-10 MB, so such a run rewrites it every 1,250-2,500 scenes and the
# journal keeps the rest: with the journal's ~0.5 KB a scene and the first and last write, a run
# writes ~6 KB per scene, whatever the pace at which its scenes finish.
FILE_BUDGET_PER_ATTEMPT = 4000


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
    """The summary at `key` with its journal applied, or None: absent, unreadable or this run's
    own (the last two said)."""
    try:
        doc = read_summary(store, key)
    except ValueError as error:
        warn(f"ignoring unreadable previous summary ({error})")
        return None
    if doc is not None and doc["run_id"] == own_run_id:
        warn(f"ignoring {store.uri(key)}: it is this run's own summary, not a previous run's")
        return None
    return doc


def read_summary(store, key: str) -> dict | None:
    """The run summary at `key` as complete as the store has it: the file, and the scenes of its
    journal chunks written after it (a run still going, or a driver that was killed). None when
    there is no file; ValueError when it is not a run summary (run-summary.schema.json). Only
    what is read back is validated: the driver's periodic writes are not (the tests are)."""
    data = store.get_bytes(key)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError as error:
        raise ValueError(f"{store.uri(key)} is not a run summary: not JSON ({error})") from None
    text = schemas.problem(doc, schemas.RUN_SUMMARY)
    if text is not None:
        raise ValueError(f"{store.uri(key)} is not a run summary: {text}")
    journal = doc.get("journal")
    if journal is None:
        return doc
    index = {scene["name"]: i for i, scene in enumerate(doc["scenes"])}
    seq = journal["next"]
    while (data := store.get_bytes(chunk_key(journal["prefix"], seq))) is not None:
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if (schemas.problem(chunk, schemas.RUN_SUMMARY, "journalChunk") is not None
                or chunk["run_id"] != doc["run_id"] or chunk["seq"] != seq):
            warn(f"ignoring {store.uri(chunk_key(journal['prefix'], seq))} and later chunks: "
                 "not this summary's journal")
            break
        for scene in chunk["scenes"]:
            i = index.get(scene["name"])
            if i is not None:  # a chunk only updates the file's scenes
                doc["scenes"][i] = scene
        doc["updated_at"] = chunk["updated_at"]
        seq += 1
    if seq != journal["next"]:
        doc["journal"] = dict(journal, next=seq)
        doc["totals"] = count_totals(doc["scenes"])
    return doc


def read_launch_phases(path) -> list[dict] | None:
    """The front end's launch-phases.json (a JSON array of {name, seconds}) as the summary's
    `launch_phases`; None when there is none, or (said in a warning) when it is not that."""
    from jsonschema import Draft202012Validator

    try:
        phases = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        warn(f"ignoring {path}: unreadable ({error})")
        return None
    # The summary schema's own definition of the property (it has no $refs to resolve).
    schema = schemas.load(schemas.RUN_SUMMARY)["properties"]["launch_phases"]
    error = next(iter(Draft202012Validator(schema).iter_errors(phases)), None)
    if error is not None:
        warn(f"ignoring {path}: not a list of {{name, seconds}} ({error.message})")
        return None
    return phases


def chunk_key(prefix: str, seq: int) -> str:
    return f"{prefix}{seq:06d}.json"


def count_totals(scenes: list[dict]) -> dict:
    statuses = [s.get("status") for s in scenes]
    return {
        "total": len(statuses),
        "succeeded": statuses.count("SUCCESS"),
        "failed": statuses.count("FAILED"),
        "pending": statuses.count("PENDING"),
        "retried": sum(1 for s in scenes if (s.get("attempts") or 0) > 1),
    }


def warn(text: str) -> None:
    print(f"warning: {text}", flush=True)


def pending_scene(name: str, expected_cost: float, category: str | None = None) -> dict:
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
        "category": category,
    }


class RunSummary:
    def __init__(self, plan: dict, previous: dict | None = None,
                 previous_run: Previous | None = None):
        """`previous` (a resume): its SUCCESS scenes are carried over and not run again.
        `previous_run`: the run before this one (find_previous), which the summary names for the
        report's comparison. Each scene gets its plan's `category` (goal.category, or None)."""
        done = {s["name"]: s for s in (previous or {}).get("scenes", []) if s["status"] == "SUCCESS"}
        self.scenes: dict[str, dict] = {}
        for scene in plan["scenes"]:
            carried = done.get(scene["name"])
            category = scene.get("category")
            if carried:
                self.scenes[scene["name"]] = dict(copy.deepcopy(carried), resumed=True,
                                                  category=category)
            else:
                self.scenes[scene["name"]] = pending_scene(scene["name"], scene["expected_cost"],
                                                           category)
        # Kept as scenes are recorded: the progress line reads them after every scene.
        self.counts = count_totals(list(self.scenes.values()))
        # Scenes recorded since the store last got them (SummaryWriter), in recording order.
        self.changed: dict[str, None] = {}
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
            "previous": previous_run_ref(previous_run),
        }
        if plan.get("budget_usd") is not None:
            self.doc["budget_usd"] = plan["budget_usd"]

    def pending(self) -> list[str]:
        return [name for name, s in self.scenes.items() if s["status"] == "PENDING"]

    def record(self, name: str, result: dict, final: bool) -> None:
        """Add an attempt; a final one (success, or no retry left) settles the scene."""
        scene = self.scenes[name]
        scene["attempts"] += 1
        if scene["attempts"] == 2:
            self.counts["retried"] += 1
        self.changed[name] = None
        attempt = {k: result.get(k) for k in ("attempt", "exit_code", "failure_class",
                                              "duration_s", "node", "started_at")}
        attempt["log"] = (result.get("outputs") or {}).get("log")
        scene["history"].append(attempt)
        if final:
            status = "FAILED" if result["failure_class"] else "SUCCESS"
            self.counts[STATUS_COUNT[scene["status"]]] -= 1
            self.counts[STATUS_COUNT[status]] += 1
            scene.update(
                status=status,
                exit_code=result.get("exit_code"),
                failure_class=result["failure_class"],
                duration_s=result.get("duration_s"),
                node=result.get("node"),
                outputs=result.get("outputs") or scene["outputs"],
                log_excerpt=result.get("log_excerpt"),
            )

    def totals(self) -> dict:
        return dict(self.counts)

    def finish(self, state: str, stop_reason: str | None = None) -> None:
        """`stop_reason`: why the run stopped starting scenes when nobody cancelled it."""
        self.doc["state"] = state
        self.doc["finished_at"] = utc_now()
        if stop_reason is not None:
            self.doc["stop_reason"] = stop_reason

    def set_launch_phases(self, phases: list[dict] | None) -> None:
        """What each step before the driver took (read_launch_phases); None: not measured."""
        if phases is not None:
            self.doc["launch_phases"] = phases

    def set_nodes(self, nodes: list[dict] | None) -> None:
        """The cluster's nodes (nodes.cluster_nodes), for the cost estimate; None: unknown."""
        if nodes is not None:
            self.doc["nodes"] = nodes

    def pointer_bytes(self, previous: Previous) -> bytes:
        """The latest-run pointer naming this run (and the run it followed)."""
        return json.dumps({
            "schema_version": SCHEMA_VERSION,
            "run_id": self.doc["run_id"],
            "module": self.doc["module"],
            "metadata": self.doc["metadata"],
            "summary_key": self.doc["summary_key"],
            "started_at": self.doc["started_at"],
            "previous": previous_run_ref(previous),
        }, indent=1).encode()

    def to_bytes(self, journal: dict | None = None) -> bytes:
        """The whole summary; `journal`: where the changes made after it will be. Compact JSON:
        json's C encoder serializes only without indent (10x faster at 10,000 scenes)."""
        self.doc["updated_at"] = utc_now()
        doc = dict(self.doc, totals=self.totals(), scenes=list(self.scenes.values()))
        if journal is not None:
            doc["journal"] = journal
        return compact(doc)

    def chunk_bytes(self, seq: int, names) -> bytes:
        """A journal chunk: the scenes `names` as they are now."""
        self.doc["updated_at"] = utc_now()
        return compact({"schema_version": SCHEMA_VERSION, "run_id": self.doc["run_id"],
                        "seq": seq, "updated_at": self.doc["updated_at"],
                        "scenes": [self.scenes[name] for name in names]})


def previous_run_ref(previous: Previous | None) -> dict | None:
    """How a summary or the pointer names the run before: `{run_id, summary_key}`, or None."""
    if previous is None or previous.summary is None:
        return None
    return {"run_id": previous.run_id, "summary_key": previous.key}


STATUS_COUNT = {"SUCCESS": "succeeded", "FAILED": "failed", "PENDING": "pending"}


def compact(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class SummaryWriter:
    """Keeps a RunSummary on the store: never more than `interval_s` (plus one write) behind,
    and at a cost per finished scene that does not grow with the run (see the module's doc).

    The driver calls `save()` at the start and the end (finished, interrupted), `flush_if_due()`
    whenever it wakes, and waits no longer than `due_in()` for scenes to finish.
    """

    def __init__(self, store, summary: RunSummary, interval_s: float = SUMMARY_INTERVAL_S,
                 budget: float = FILE_BUDGET_PER_ATTEMPT, clock=time.monotonic):
        self.store, self.summary = store, summary
        self.interval_s, self.budget, self.clock = interval_s, budget, clock
        self.key = summary.doc["summary_key"]
        # A journal of this driver's own: one started again on the same plan never reads or
        # overwrites the chunks of the one before.
        self.journal_prefix = (f"{self.key.removesuffix('.json')}.journal/"
                               f"{secrets.token_hex(6)}/")
        self.seq = 0                 # chunks written
        self.last_write = float("-inf")
        self.dirty_since: float | None = None
        self.attempts = 0            # attempts recorded: what earns whole-file rewrites
        self.rewritten = 0           # bytes of whole-file rewrites during the run
        self.file_size = 0

    def record(self, name: str, result: dict, final: bool) -> None:
        self.summary.record(name, result, final)
        self.attempts += 1
        if self.dirty_since is None:
            self.dirty_since = self.clock()

    def due_in(self) -> float | None:
        """Seconds until what changed must be written (0: now); None when nothing changed."""
        if self.dirty_since is None:
            return None
        due = max(self.dirty_since, self.last_write + self.interval_s)
        return max(0.0, due - self.clock())

    def flush_if_due(self) -> None:
        if self.due_in() == 0.0:
            self.flush()

    def flush(self) -> None:
        """What changed: the whole file while the budget affords it, else a journal chunk."""
        if self.rewritten + self.file_size <= self.budget * self.attempts:
            self.rewritten += self.save()
        else:
            self.seq += 1
            self._put(chunk_key(self.journal_prefix, self.seq),
                      self.summary.chunk_bytes(self.seq, self.summary.changed))

    def save(self) -> int:
        """The whole file, everything in it; returns its size."""
        data = self.summary.to_bytes({"prefix": self.journal_prefix, "next": self.seq + 1})
        self._put(self.key, data)
        self.file_size = len(data)
        return len(data)

    def _put(self, key: str, data: bytes) -> None:
        self.store.put_bytes(key, data)
        self.summary.changed.clear()
        self.dirty_since = None
        self.last_write = self.clock()
