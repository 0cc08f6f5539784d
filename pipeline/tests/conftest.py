"""Fixtures for the driver tests: one real local Ray per session, plan directories built the way
src/plan.ts builds them, drivers run as real subprocesses (real signals, real exit codes).

Run: .venv/bin/python -m pytest pipeline/tests
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = "pipeline/run_eval.py"  # relative to REPO, the cwd of every driver subprocess
STEP_SECONDS = 0.002  # demo_step_seconds for the copied MCS config (the demo default)
DRIVER_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray for the whole session; ray.shutdown() stops exactly what it started."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class PlanDir:
    """A plan directory as src/plan.ts writes it, with a local directory store next to it."""

    def __init__(self, root: Path, ray_address: str, store: str | None = None,
                 step_seconds: float = STEP_SECONDS):
        self.dir = root / "plan"
        self.store_dir = root / "store"
        self.ray_address = ray_address
        self.scene_names: list[str] = []
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
            "[MCS]\nrun_script = ray_script.sh\nscene_location = scenes/\nscene_list = scenes.txt\n")
        self.plan = {
            "schema_version": 1,
            "run_id": f"test-{root.name}",
            "module": "demo",
            "metadata": metadata,
            "target": "local",
            "cluster_name": None,
            "ray_version": "2.60.0",
            "store": store or str(self.store_dir),
            "summary_key": f"{folder}/{prefix}_run-summary.json",
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
    def scene(self, name: str, last_step: int = 5, demo: dict | None = None) -> "PlanDir":
        """Write scenes/<name>.json (replacing an earlier one of that name) and list it."""
        doc = {"name": name, "version": "2",
               "goal": {"category": "retrieval", "last_step": last_step, "action_list": []}}
        if demo is not None:
            doc["demo"] = demo
        (self.dir / "scenes" / f"{name}.json").write_text(json.dumps(doc, indent=1))
        self.plan["scenes"] = [s for s in self.plan["scenes"] if s["name"] != name]
        self.plan["scenes"].append(
            {"name": name, "file": f"scenes/{name}.json", "expected_cost": last_step})
        if name not in self.scene_names:
            self.scene_names.append(name)
        self.write()
        return self

    def set(self, **fields) -> "PlanDir":
        self.plan.update(fields)
        self.write()
        return self

    def write(self) -> None:
        (self.dir / "plan.json").write_text(json.dumps(self.plan, indent=1))
        (self.dir / "scenes.txt").write_text("".join(f"{s['name']}.json\n"
                                                     for s in self.plan["scenes"]))

    # -- running -------------------------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        return [sys.executable, DRIVER, "--plan", str(self.dir), "--ray-address",
                self.ray_address, *args]

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(*args), cwd=REPO, env=env, text=True,
                              capture_output=True, timeout=DRIVER_TIMEOUT_S)
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
        return self.store_dir / self.plan["summary_key"]

    def summary(self) -> dict:
        return json.loads(self.summary_path.read_text())

    def scene_summary(self, name: str, summary: dict | None = None) -> dict:
        scenes = {s["name"]: s for s in (summary or self.summary())["scenes"]}
        return scenes[name]

    def history_key(self, scene: str) -> str:
        return f"{self.names['folder']}/{self.names['prefix']}_{scene}.json"

    def log_key_pattern(self, scene: str) -> str:
        """The DESIGN §4 log name as a regex."""
        import re

        return (re.escape(f"{self.names['folder']}/{self.names['prefix']}_{scene}_")
                + r"\d{8}-\d{6}_log\.txt")

    def store_files(self) -> set[str]:
        """Every object in the local store, as keys (hidden temporary files would show too)."""
        return {str(p.relative_to(self.store_dir)) for p in self.store_dir.rglob("*")
                if p.is_file()}


@pytest.fixture
def make_plan(tmp_path, ray_address):
    """make_plan(**plan_fields) -> PlanDir in its own tmp directory."""
    count = 0

    def make(store: str | None = None, step_seconds: float = STEP_SECONDS, **fields) -> PlanDir:
        nonlocal count
        count += 1
        root = tmp_path / f"p{count}"
        root.mkdir()
        plan = PlanDir(root, ray_address, store=store, step_seconds=step_seconds)
        return plan.set(**fields) if fields else plan

    return make


def processes_matching(text: str) -> list[str]:
    """`pid args` lines of live processes whose command line contains `text` (not ps itself)."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True,
                         check=True).stdout
    return [line.strip() for line in out.splitlines()
            if text in line and "ps -eo" not in line and " Z" not in f" {line.split()[1]}"]


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
def moto_endpoint(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 for the session; stopped through its Popen handle."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None  # died: stop waiting, fail below

    try:
        wait_for(answers, 30, 0.1)
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}")
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    """Dummy credentials and the moto endpoint, for boto3 here and for driver subprocesses."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)
