"""One scene, one attempt: the body of the Ray task.

The task writes the MCS config and the scene to a temporary directory of its own (concurrent
tasks on one node never share a path), starts the node's services if the module has them, runs
the module's run script in the node's own environment with a wall clock, keeps its output as the
scene log, finds the outputs this attempt left where MCS leaves them (mcs_outputs), classifies a
failure (failures), and uploads the outputs to the store under the names of DESIGN §4. It
returns a plain dict; the driver owns the summary and the retries.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import node_services
from .failures import Signals, classify
from .mcs_outputs import Outputs, file_name, find_history, find_outputs, fresh, key_name, mcs_name
from .session import node_environment, run_script
from .store import open_store

EXCERPT_LINES = 40
EXCERPT_BYTES = 4000


def utc_now() -> str:
    return iso(datetime.now(timezone.utc))


def iso(moment: datetime) -> str:
    """UTC, to the millisecond: benchmarks and the report compute makespans from these."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def node_address() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside a Ray worker (unit use): the host name is the best we have
        return socket.gethostname()


def excerpt(text: str) -> str:
    tail = "\n".join(text.splitlines()[-EXCERPT_LINES:])
    return tail[-EXCERPT_BYTES:]


def remove_tree(path: Path) -> None:
    """shutil.rmtree that an interrupt arriving half-way (Ray raises it once) does not cut short."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def upload_outputs(spec: dict, key_scene: str, log_path: Path, found: Outputs,
                   started_local: datetime) -> dict:
    """The attempt's files under the original names: `<folder>/<prefix>_<scene>.json`,
    `<movies folder>/<prefix>_<scene>_<type>.mp4`, `<folder>/<prefix>_<scene>_<stamp>_log.txt`
    with the history's timestamp (so an attempt's files match), else the attempt's start."""
    names = spec["names"]
    store = open_store(spec["store"])
    base = f"{names['prefix']}_{key_scene}"
    history = found.history
    # Without a history, milliseconds: a quick retry must not overwrite the failed attempt's log.
    stamp = history.timestamp if history else (
        started_local.strftime("%Y%m%d-%H%M%S-") + f"{started_local.microsecond // 1000:03d}")
    outputs: dict = {"history": None, "log": f"{names['folder']}/{base}_{stamp}_log.txt",
                     "videos": []}
    # The version each write made (a versioned bucket): a later run replaces these keys, and the
    # report links the version this run wrote.
    versions: dict[str, str] = {}

    def put(key: str, source: Path) -> None:
        if version := store.put_file(key, str(source)):
            versions[key] = version

    put(outputs["log"], log_path)
    if history is not None:
        outputs["history"] = f"{names['folder']}/{base}.json"
        put(outputs["history"], history.path)
    for kind, video in sorted(found.videos.items()):
        key = f"{names['movies_folder']}/{base}_{kind}.mp4"
        put(key, video)
        outputs["videos"].append(key)
    if versions:
        outputs["versions"] = versions
    return outputs


def log_notes(eval_dir: Path, found: Outputs, since_ns: int, failure: str | None) -> list[str]:
    """Lines the pipeline adds to the scene log: what it left out and, for an X server failure,
    the X server's own error output (team scripts send it to startx-err.txt)."""
    notes = list(found.notes)
    startx = eval_dir / "startx-err.txt"
    if failure == "xserver" and fresh(startx, since_ns):
        tail = excerpt(startx.read_text(errors="replace"))
        notes.append(f"{startx}:\n{tail}")
    return notes


def budget_refusal(spec: dict) -> str | None:
    """Why the run's budget does not let this attempt start (budget.Gate), or None."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return ray.get(spec["gate"].may_start.remote(spec["name"], spec["attempt"], node_id))


def run_scene(spec: dict) -> dict:
    """Play one attempt of one scene. `spec` is built by the driver (see driver.scene_spec).
    Refused by the budget: {"attempt", "refused": why}, and nothing done."""
    if spec.get("gate") is not None:  # first of all: a scene refused must leave no trace
        refusal = budget_refusal(spec)
        if refusal is not None:
            return {"attempt": spec["attempt"], "refused": refusal}
    started = datetime.now(timezone.utc)
    started_local = datetime.now()  # MCS stamps its files in the node's local time
    since_ns = time.time_ns()
    t0 = time.monotonic()
    name = spec["name"]
    workdir = None
    try:  # a cancel (KeyboardInterrupt) may come at any point: the finally still removes it
        scene = mcs_name(spec["scene"], name)  # what MCS names the outputs after
        workdir = Path(tempfile.mkdtemp(prefix=f"mcs-{file_name(scene)}-"))
        config = workdir / "mcs_config.ini"
        config.write_text(spec["mcs_config"])
        scene_file = workdir / f"{file_name(scene)}.json"
        scene_file.write_text(spec["scene"])
        eval_dir = Path(spec["eval_dir"]) if spec.get("eval_dir") else workdir / "eval"
        eval_dir.mkdir(parents=True, exist_ok=True)
        log_path = workdir / "scene.log"
        node_env = node_environment()
        env = dict(node_env, MCS_ATTEMPT=str(spec["attempt"]), MCS_SCENE_NAME=name)

        services = (node_services.ensure_here(spec, node_env)
                    if spec.get("node_services") else {"ok": True})
        if not services["ok"]:
            log_path.write_text(services["log"])
            exit_code, timed_out, lingered = None, False, False
        else:
            exit_code, timed_out, lingered = run_script(
                spec["run_script"], [str(config), str(scene_file), str(eval_dir)], log_path,
                eval_dir, spec["timeout_s"], env,
                scene_ended=lambda: find_history(eval_dir, scene, since_ns) is not None,
                end_grace_s=spec["scene_end_grace_s"])
        duration = time.monotonic() - t0
        found = find_outputs(eval_dir, scene, since_ns)
        log_text = log_path.read_text(errors="replace")
        failure = "node_services" if not services["ok"] else classify(
            Signals(exit_code, timed_out, log_text[-20000:], found.history,
                    spec["history_required"], lingered))
        notes = log_notes(eval_dir, found, since_ns, failure)
        if timed_out:
            notes.append(f"scene timed out after {spec['timeout_s']:.0f} s")
        if lingered:
            notes.append(f"the run script still ran {spec['scene_end_grace_s']:.0f} s after MCS "
                         "wrote the scene history; stopped it (the scene is not run again)")
        if notes:
            log_text += "".join(f"\n[mcs-pipeline] {note}" for note in notes) + "\n"
            log_path.write_text(log_text)
        outputs = upload_outputs(spec, key_name(scene), log_path, found, started_local)
        return {
            "attempt": spec["attempt"],
            "exit_code": exit_code,
            "failure_class": failure,
            "duration_s": round(duration, 3),
            "node": node_address(),
            "started_at": iso(started),
            "outputs": outputs,
            "log_excerpt": excerpt(log_text) if failure else None,
        }
    finally:
        if workdir is not None:
            remove_tree(workdir)
