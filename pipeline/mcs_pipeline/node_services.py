"""A module's node services: what its scenes share on a node (servers a performer talks to),
started once per node before its first scene, kept across scenes, stopped when the run ends.

configs/M_aws.ini `node_services = script` (in deploy_files/M/): called as
`script MCS_CONFIG EVAL_DIR`; it starts the services and exits 0 once they are ready. What it
leaves running in its session lives until the run ends; then the whole session is stopped (TERM,
grace, KILL). A scene's own clean-up never touches it: the services are not in the scene's session.

One Ray actor per node and run owns them (named, detached: a scene task that creates it must not
take it down when it ends); the driver stops every one of them when the run ends, finished or
interrupted. A driver killed outright leaves them to the cluster's teardown.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from . import session

ACTOR_PREFIX = "mcs-services-"
START_TIMEOUT_S = 600


class NodeServices:
    """The actor's body (wrapped by ray.remote in `actor_class`)."""

    def __init__(self, script: str, mcs_config: str, eval_dir: str | None, env: dict[str, str]):
        self.dir = Path(tempfile.mkdtemp(prefix="mcs-services-"))
        config = self.dir / "mcs_config.ini"
        config.write_text(mcs_config)
        self.eval_dir = Path(eval_dir) if eval_dir else self.dir
        self.eval_dir.mkdir(parents=True, exist_ok=True)
        self.args = [script, str(config), str(self.eval_dir)]
        self.env = env
        self.log = self.dir / "node_services.log"
        self.proc: subprocess.Popen | None = None

    def ensure(self) -> dict:
        """Start the services unless they started; {"ok", "pid", "log"}. A failed start is tried
        again by the next scene on this node."""
        if self.proc is not None and self.proc.returncode == 0:
            return {"ok": True, "pid": self.proc.pid, "log": ""}
        if self.proc is not None:  # a failed start: clean up what it left, then try again
            session.stop_session(self.proc, session.KILL_GRACE_S)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.eval_dir, env=self.env, start_new_session=True)
        try:
            code = self.proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        text = self.log.read_text(errors="replace")
        if code == 0:
            return {"ok": True, "pid": self.proc.pid, "log": text}
        reason = "did not finish starting" if code is None else f"exited {code}"
        return {"ok": False, "pid": self.proc.pid,
                "log": f"{text}\n[mcs-pipeline] node services {reason}\n"}

    def stop(self) -> bool:
        """Stop the services' whole session; True when something had been started."""
        if self.proc is None:
            return False
        session.stop_session(self.proc, session.KILL_GRACE_S)
        return True


def actor_class():
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(NodeServices)


def ensure_here(spec: dict, env: dict[str, str]) -> dict:
    """From a scene task: this node's services, started if they are not (see the module doc)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    actor = actor_class().options(
        name=f"{ACTOR_PREFIX}{spec['run_id']}-{node_id}", get_if_exists=True, lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(spec["node_services"], spec["mcs_config"], spec.get("eval_dir"), env)
    return ray.get(actor.ensure.remote())


def stop_all(ray, run_id: str, timeout_s: float) -> int:
    """From the driver: stop every node's services of this run; the number stopped. Never raises
    (the run's summary is still to be saved)."""
    try:
        names = [a["name"] if isinstance(a, dict) else a
                 for a in ray.util.list_named_actors(all_namespaces=False)]
        actors = [ray.get_actor(n) for n in names if n.startswith(f"{ACTOR_PREFIX}{run_id}-")]
        stopped = ray.get([a.stop.remote() for a in actors], timeout=timeout_s)
        for actor in actors:
            ray.kill(actor)
        return sum(stopped)
    except Exception as error:
        print(f"mcs-pipeline: stopping node services failed: {error}", flush=True)
        return 0
