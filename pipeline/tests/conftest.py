"""Fixtures for the driver tests: one real local Ray per session, plan directories built the way
src/plan.ts builds them, drivers run as real subprocesses (real signals, real exit codes).

Every plan.json, summary and pointer built here, and every one a test reads back from the store,
is checked against pipeline/mcs_pipeline/schemas/: a hand-built document that drifts from the
formats fails where it is made.

Run: .venv/bin/python -m pytest pipeline/tests
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The unit tests import the driver's package from the repo (the plan copy is what drivers run).
sys.path.insert(0, str(REPO / "pipeline"))
from mcs_pipeline import schemas  # noqa: E402  (after the path)

DRIVER = "pipeline/run_eval.py"  # relative to REPO, the cwd of every driver subprocess
STEP_SECONDS = 0.002  # demo_step_seconds for the copied MCS config (the demo default)
DRIVER_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def s3_port() -> int:
    """The port the session's moto server will use (started only by tests that need S3)."""
    return free_port()


def s3_environment(port: int) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}


@pytest.fixture(scope="session")
def ray_address(s3_port):
    """One local Ray for the whole session; ray.shutdown() stops exactly what it started.

    Its workers inherit this process's environment, so it gets the S3 test settings first: like
    cluster nodes set up for the results store (the driver forwards no environment to tasks).
    """
    import ray

    saved = dict(os.environ)
    os.environ.update(s3_environment(s3_port))
    try:
        ray.init(num_cpus=4, include_dashboard=False)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


class PlanDir:
    """A plan directory as src/plan.ts writes it, with a local directory store next to it."""

    def __init__(self, root: Path, ray_address: str, store: str | None = None,
                 step_seconds: float = STEP_SECONDS):
        self.dir = root / "plan"
        self.store_dir = root / "store"
        self.ray_address = ray_address
        self.started: list[RunningDriver] = []
        self.runs = 0
        mcs = configparser.ConfigParser()
        mcs.read(REPO / "configs" / "mcs_config_demo_level2.ini")
        mcs["MCS"]["demo_step_seconds"] = str(step_seconds)
        section = mcs["MCS"]
        folder, metadata = section["s3_folder"], section["metadata"]
        prefix = f"{section['evaluation_name']}_{metadata}_{section['team']}"

        (self.dir / "configs").mkdir(parents=True)
        (self.dir / "scenes").mkdir()
        shutil.copytree(REPO / "pipeline", self.dir / "pipeline",
                        ignore=shutil.ignore_patterns("tests", "__pycache__", ".pytest_cache"))
        shutil.copytree(REPO / "deploy_files" / "demo", self.dir / "deploy")
        (self.dir / "deploy" / "ray_script.sh").chmod(0o755)
        with open(self.dir / "configs" / "mcs_config.ini", "w") as f:
            mcs.write(f)
        (self.dir / "configs" / "exec.ini").write_text(
            "[MCS]\nrun_script = ray_script.sh\n"
            "scene_location = scenes/\nscene_list = scenes.txt\n")
        self.plan = {
            "schema_version": 1,
            "run_id": f"test-{root.name}-0",
            "module": "demo",
            "metadata": metadata,
            "target": "local",
            "cluster_name": None,
            "ray_version": "2.60.0",
            "store": store or str(self.store_dir),
            "summary_key": f"{folder}/{prefix}_test-{root.name}-0_run-summary.json",
            "latest_key": f"{folder}/{prefix}_latest-run.json",
            "legacy_summary_key": f"{folder}/{prefix}_run-summary.json",
            "names": {"folder": folder,
                      "movies_folder": section.get("s3_movies_folder") or folder,
                      "prefix": prefix},
            "retries": 0,
            "scene_timeout_s": 60,
            "resume": False,
            "resources": {"num_cpus": 1, "num_gpus": 0},
            "run_script": "deploy/ray_script.sh",
            "eval_dir": None,
            "history_required": True,
            "mcs_config": "configs/mcs_config.ini",
            "scenes": [],
        }
        self.write()

    # -- building ------------------------------------------------------------------------------
    def scene(self, name: str, last_step: int = 5, demo: dict | None = None,
              category: str | None = "retrieval") -> "PlanDir":
        """Write scenes/<name>.json (replacing an earlier one of that name) and list it, with its
        goal.category in the plan as src/scenes.ts reads it (None: the file has none)."""
        goal = {"last_step": last_step, "action_list": []}
        if category is not None:
            goal["category"] = category
        doc = {"name": name, "version": "2", "goal": goal}
        if demo is not None:
            doc["demo"] = demo
        (self.dir / "scenes" / f"{name}.json").write_text(json.dumps(doc, indent=1))
        self.plan["scenes"] = [s for s in self.plan["scenes"] if s["name"] != name]
        self.plan["scenes"].append(
            {"name": name, "file": f"scenes/{name}.json", "expected_cost": last_step,
             "category": category})
        self.write()
        return self

    def s3_scene(self, bucket: str, name: str, last_step: int = 5,
                 category: str | None = "retrieval", key: str | None = None) -> "PlanDir":
        """Store the scene in S3 (at `key`, default scenes/<name>.json) and list it by `uri`, as
        src/plan.ts does for an s3:// scene set: no file, no expected cost, no category."""
        import boto3

        goal = {"last_step": last_step, "action_list": []}
        if category is not None:
            goal["category"] = category
        key = key or f"scenes/{name}.json"
        boto3.client("s3").put_object(Bucket=bucket, Key=key,
                                      Body=json.dumps({"name": name, "goal": goal}).encode())
        self.plan["scenes"] = [s for s in self.plan["scenes"] if s["name"] != name]
        self.plan["scenes"].append({"name": name, "uri": f"s3://{bucket}/{key}",
                                    "expected_cost": None, "category": None})
        self.write()
        return self

    def set(self, **fields) -> "PlanDir":
        self.plan.update(fields)
        self.write()
        return self

    def new_run(self, run_id: str | None = None) -> str:
        """A run id (and summary key) for the next driver, as every CLI run gets a plan of its own;
        `run_id` to start one again on the same plan."""
        if run_id is None:
            self.runs += 1
            run_id = f"test-{self.dir.parent.name}-{self.runs}"
        self.set(run_id=run_id, summary_key=self.summary_key_of(run_id))
        return run_id

    def summary_key_of(self, run_id: str) -> str:
        """src/plan.ts resultKeys: one summary per run."""
        return f"{self.names['folder']}/{self.names['prefix']}_{run_id}_run-summary.json"

    def write(self) -> None:
        schemas.check(self.plan, schemas.PLAN)
        (self.dir / "plan.json").write_text(json.dumps(self.plan, indent=1))
        (self.dir / "scenes.txt").write_text("".join(f"{s['name']}.json\n"
                                                     for s in self.plan["scenes"]))

    # -- running -------------------------------------------------------------------------------
    def command(self, *args: str, ray_address: str | None = None,
                run_id: str | None = None) -> list[str]:
        """A driver command for a new run (a fresh run id), or `run_id` again."""
        self.new_run(run_id)
        return [sys.executable, DRIVER, "--plan", str(self.dir), "--ray-address",
                ray_address or self.ray_address, *args]

    def start(self, *args: str, env: dict | None = None,
              run_id: str | None = None) -> "RunningDriver":
        driver = RunningDriver(self.command(*args, run_id=run_id), env,
                               self.dir.parent / "driver.stderr")
        self.started.append(driver)
        return driver

    def run(self, *args: str, env: dict | None = None, ray_address: str | None = None,
            run_id: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(*args, ray_address=ray_address, run_id=run_id),
                              cwd=REPO, env=env, text=True, capture_output=True,
                              timeout=DRIVER_TIMEOUT_S)
        # Shown by pytest only when a test fails.
        print(f"$ {' '.join(proc.args)}\n--- exit {proc.returncode}\n--- stdout\n{proc.stdout}"
              f"--- stderr\n{proc.stderr[-4000:]}")
        return proc

    # -- reading the store ---------------------------------------------------------------------
    @property
    def names(self) -> dict:
        return self.plan["names"]

    @property
    def summary_path(self) -> Path:
        """The summary of the latest driver started on this plan."""
        return self.store_dir / self.plan["summary_key"]

    def summary(self, run_id: str | None = None) -> dict:
        path = self.store_dir / self.summary_key_of(run_id) if run_id else self.summary_path
        doc = json.loads(path.read_text())
        schemas.check(doc, schemas.RUN_SUMMARY)
        return doc

    @property
    def latest_path(self) -> Path:
        return self.store_dir / self.plan["latest_key"]

    def latest(self) -> dict:
        """The latest-run pointer."""
        doc = json.loads(self.latest_path.read_text())
        schemas.check(doc, schemas.RUN_SUMMARY, "pointer")
        return doc

    def scene_summary(self, name: str, summary: dict | None = None) -> dict:
        scenes = {s["name"]: s for s in (summary or self.summary())["scenes"]}
        return scenes[name]

    def history_key(self, scene: str) -> str:
        return f"{self.names['folder']}/{self.names['prefix']}_{scene}.json"

    def log_key_pattern(self, scene: str) -> str:
        """The DESIGN §4 log name as a regex: the history's timestamp (group 1), or without a
        history the attempt's start to the millisecond."""
        return (re.escape(f"{self.names['folder']}/{self.names['prefix']}_{scene}_")
                + r"(\d{8}-\d{6}(?:-\d{3})?)_log\.txt")

    def put_previous(self, run_id: str, scenes: list[dict], legacy: bool = False) -> str:
        """Leave an earlier run's summary in the store, as a driver would have: at its own key with
        the pointer naming it, or (`legacy`) at the shared key of the version before pointers.
        `scenes` may give only some fields: the rest are a success's. Returns its key."""
        key = self.plan["legacy_summary_key"] if legacy else self.summary_key_of(run_id)
        at = "2026-01-01T00:00:00.000Z"
        scenes = [dict(succeeded_scene(scene["name"]), **scene) for scene in scenes]
        statuses = [scene["status"] for scene in scenes]
        self.put_json(key, {
            "schema_version": 1, "run_id": run_id, "module": "demo",
            "metadata": self.plan["metadata"], "cluster_name": None, "store": self.plan["store"],
            "summary_key": key, "state": "finished", "started_at": at, "updated_at": at,
            "finished_at": at, "scenes": scenes,
            "totals": {"total": len(scenes), "succeeded": statuses.count("SUCCESS"),
                       "failed": statuses.count("FAILED"), "pending": statuses.count("PENDING"),
                       "retried": sum(1 for scene in scenes if scene["attempts"] > 1)},
        }, schemas.RUN_SUMMARY)
        if not legacy:
            self.put_json(self.plan["latest_key"], {
                "schema_version": 1, "run_id": run_id, "module": "demo",
                "metadata": self.plan["metadata"], "summary_key": key, "started_at": at,
                "previous": None}, schemas.RUN_SUMMARY, "pointer")
        return key

    def put_json(self, key: str, doc: dict, *schema: str) -> None:
        """`schema`: the schema file (and definition) `doc` must match."""
        if schema:
            schemas.check(doc, *schema)
        path = self.store_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1))

    def store_files(self) -> set[str]:
        """Every object in the local store, as keys (hidden temporary files would show too)."""
        return {str(p.relative_to(self.store_dir)) for p in self.store_dir.rglob("*")
                if p.is_file()}


def succeeded_scene(name: str) -> dict:
    """A scene as a summary has it after one successful attempt."""
    log = f"f/{name}_log.txt"
    return {"name": name, "status": "SUCCESS", "attempts": 1, "exit_code": 0,
            "failure_class": None, "duration_s": 1.0, "node": "127.0.0.1", "expected_cost": 5,
            "resumed": False, "outputs": {"history": f"f/{name}.json", "log": log, "videos": []},
            "log_excerpt": None,
            "history": [{"attempt": 1, "exit_code": 0, "failure_class": None, "duration_s": 1.0,
                         "node": "127.0.0.1", "started_at": "2026-01-01T00:00:00.000Z",
                         "log": log}]}


class RunningDriver:
    """A driver subprocess in the background; its stdout lines are collected as they come."""

    def __init__(self, command: list[str], env: dict | None, stderr_path: Path):
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "w")
        self.proc = subprocess.Popen(command, cwd=REPO, env=env, text=True, bufsize=1,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout_s: float = 60) -> str:
        """The first stdout line matching the regex, waiting for it (fails if none comes)."""
        def found():
            return next((l for l in self.lines if re.search(pattern, l)), None)

        wait_for(lambda: found() or self.proc.poll() is not None, timeout_s)
        line = found()
        assert line, f"no stdout line matching {pattern!r}; got {self.lines}"
        return line

    def finish(self, timeout_s: float = DRIVER_TIMEOUT_S) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        self._stderr.close()
        print(f"--- exit {code}\n--- stdout\n" + "\n".join(self.lines)
              + f"\n--- stderr\n{self.stderr_path.read_text()[-4000:]}")
        return code

    def stop(self) -> None:
        """Clean-up for a test that failed half-way: kill this driver (by its handle) if alive."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


@pytest.fixture
def make_plan(tmp_path, ray_address):
    """make_plan(**plan_fields) -> PlanDir in its own tmp directory."""
    plans: list[PlanDir] = []

    def make(store: str | None = None, step_seconds: float = STEP_SECONDS, **fields) -> PlanDir:
        root = tmp_path / f"p{len(plans) + 1}"
        root.mkdir()
        plan = PlanDir(root, ray_address, store=store, step_seconds=step_seconds)
        plans.append(plan)
        return plan.set(**fields) if fields else plan

    yield make
    for plan in plans:
        for driver in plan.started:
            driver.stop()


def processes_matching(text: str) -> list[str]:
    """`pid stat args` of live (not zombie) processes whose command line contains `text`."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True,
                         check=True).stdout
    return [line.strip() for line in out.splitlines()
            if text in line and not line.split()[1].startswith("Z")]


def wait_for(predicate, timeout_s: float, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint(s3_port, tmp_path_factory):
    """A moto S3 server on 127.0.0.1 for the session; stopped through its Popen handle."""
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(s3_port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3_port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True  # it answered
        except OSError:
            return proc.poll() is not None  # died (port taken?): stop waiting, fail below

    try:
        wait_for(answers, 30, 0.1)
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_env(ray_address, moto_endpoint):
    """The environment for boto3 here and for driver subprocesses (the session already has it)."""
    assert os.environ["AWS_ENDPOINT_URL"] == moto_endpoint
    return dict(os.environ)
