"""The run's budget (plan budget_usd): the pricing and committed-cost arithmetic, the gate, and the
driver against a real Ray that prices its one node (a local Ray's head, by the plan's only head
node type: at $36 an hour a second of it costs a cent)."""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

import pytest

from conftest import wait_for
from mcs_pipeline import budget
from mcs_pipeline.budget import (Budget, Gate, burn_usd_per_hour, committed_usd, scene_slots,
                                 slot_usd_per_hour, spend_usd)
from mcs_pipeline.summary import RunSummary, read_launch_phases

LOCAL_PRICE = {"local": {"instance_type": None, "head": True, "spot": False,
                         "usd_per_hour": 36.0, "price_source": "test"}}
T0 = 1_780_000_000.0  # epoch seconds: the arithmetic's "now"


def iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch_s))


def node(node_id: str, usd_per_hour: float | None, started: float, ended: float | None = None):
    """A record as nodes.node_records makes it (the fields the budget reads)."""
    return {"node_id": node_id, "usd_per_hour": usd_per_hour, "started_at": iso(started),
            "ended_at": iso(ended) if ended is not None else None}


# -- pricing, as the report prices a run (src/cost.ts) -------------------------------------------
def test_spend_counts_each_priced_node_from_its_start_to_its_end_or_now():
    nodes = [node("gone", 0.5, T0 - 3 * 3600, T0 - 3600),  # 2 h at $0.50
             node("alive", 1.0, T0 - 1800),                # 0.5 h so far at $1
             node("unpriced", None, T0 - 7200)]
    assert spend_usd(nodes, T0) == pytest.approx(1.5)
    assert spend_usd(nodes, T0 + 3600) == pytest.approx(2.5)  # only the live node grows
    assert burn_usd_per_hour(nodes) == 1.0


def test_scene_slots_are_what_the_scarcest_requested_resource_fits():
    gpu_node = {"CPU": 8.0, "GPU": 4.0}
    assert scene_slots(gpu_node, {"num_cpus": 1, "num_gpus": 1}) == 4
    assert scene_slots(gpu_node, {"num_cpus": 3, "num_gpus": 1}) == 2
    assert scene_slots(gpu_node, {"num_cpus": 2, "num_gpus": 0}) == 4  # a zero request: ignored
    assert scene_slots({"CPU": 0.6}, {"num_cpus": 0.2, "num_gpus": 0}) == 3  # not 2.999...
    assert scene_slots({"CPU": 4.0}, {"num_cpus": 1, "num_gpus": 1}) == 1  # no GPU: charged whole
    assert scene_slots({"CPU": 4.0}, {"num_cpus": 0, "num_gpus": 0}) == 1


def test_a_slot_costs_its_nodes_price_over_its_slots():
    nodes = [node("a", 3.0, T0), node("b", None, T0), node("gone", 9.0, T0 - 60, T0)]
    resources = {"a": {"CPU": 8.0, "GPU": 4.0}, "b": {"CPU": 8.0, "GPU": 1.0}}
    assert slot_usd_per_hour(nodes, resources, {"num_cpus": 1, "num_gpus": 1}) == \
        {"a": 0.75, "b": 0.0}


def test_committed_is_the_expected_rest_at_the_slots_price():
    assert committed_usd(100, 40, 36.0) == pytest.approx(0.6)  # 60 s at a cent a second
    assert committed_usd(100, 130, 36.0) == 0.0  # overdue: what it takes now is in the spend


# -- the gate ----------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gate(costs: dict, budget_usd: float = 1.0, seconds_per_cost: float = 1.0) -> Gate:
    """A gate told: $0.50 spent, nodes alive at $3.60 an hour, node n1's slot at $18 an hour
    (half a cent a second), n2's at $36."""
    g = Gate(budget_usd, costs, clock=Clock())
    g.update({"spend_usd": 0.5, "burn_usd_per_hour": 3.6,
              "slot_usd_per_hour": {"n1": 18.0, "n2": 36.0}}, seconds_per_cost, [])
    return g


def test_the_gate_refuses_once_spend_and_committed_would_pass_the_budget_then_every_start():
    g = gate({"long": 100, "other": 100, "short": 1})
    assert g.may_start("long", 1, "n1") is None  # $0.50 + $0.50 for itself: exactly the budget
    g.clock.now = 10.0
    # $0.51 spent (extrapolated at $3.60 an hour), $0.45 for the 90 s left of "long", $0.50 own.
    reason = g.may_start("other", 1, "n1")
    assert reason == ("budget: $0.51 spent, $0.45 committed by 1 running scene and $0.50 for the "
                      "next would pass the budget of $1.00")
    # $0.51 + $0.45 + $0.005 would fit: refused all the same, as is a retry.
    assert g.may_start("short", 1, "n1") == reason
    assert g.may_start("long", 2, "n1") == reason


def test_the_gate_forgets_finished_scenes_and_prices_each_by_its_node():
    g = gate({"long": 100, "other": 90})
    assert g.may_start("long", 1, "n1") is None
    g.update(None, 1.0, [("long", 1)])  # no new reading: the spend goes on being extrapolated
    g.clock.now = 10.0
    assert g.may_start("other", 1, "n1") is None  # $0.51 + $0.45: "long" no longer counts
    g = gate({"a": 60})
    assert g.may_start("a", 1, "n2") == ("budget: $0.50 spent, $0.00 committed by 0 running "
                                         "scenes and $0.60 for the next would pass the budget "
                                         "of $1.00")
    g = gate({"a": 60})
    assert g.may_start("a", 1, "unseen") is not None  # a new node: priced as the dearest known


def test_the_gate_scales_costs_in_steps_by_what_it_is_told():
    g = gate({"a": 1000}, seconds_per_cost=0.0)  # steps, and no duration known yet: 0
    assert g.may_start("a", 1, "n1") is None
    g = gate({"a": 1000}, seconds_per_cost=0.2)  # 200 s at half a cent
    assert "$1.00 for the next" in g.may_start("a", 1, "n1")


# -- the driver's side, on a stand-in for Ray whose actor runs here ----------------------------
class LocalRay:
    """What Budget uses of Ray: the actor is a plain object here, its calls run at once."""

    def __init__(self):
        self.actors = []

    def remote(self, **_options):
        def wrap(cls):
            def create(*args):
                self.actors.append(cls(*args))
                return Handle(self.actors[-1])
            return SimpleNamespace(options=lambda **_o: SimpleNamespace(remote=create))
        return wrap

    @staticmethod
    def get(value):
        return value

    @staticmethod
    def get_runtime_context():
        return SimpleNamespace(get_node_id=lambda: "ab" * 28)


class Handle:
    def __init__(self, obj):
        self.obj = obj

    def __getattr__(self, method):
        return SimpleNamespace(remote=getattr(self.obj, method))


def gcs_node(node_id: str, started_s: float, cpus: float):
    """A row of Ray's node table, as nodes.node_records reads it."""
    return SimpleNamespace(node_id=bytes.fromhex(node_id), start_time_ms=int(started_s * 1000),
                           end_time_ms=0, is_head_node=True, node_type_name="", labels={},
                           instance_type_name="", node_manager_address="127.0.0.1",
                           resources_total={"CPU": cpus})


def plan_with(budget_usd: float, node_types: dict = LOCAL_PRICE) -> dict:
    return {"run_id": "r1", "budget_usd": budget_usd, "node_types": node_types,
            "resources": {"num_cpus": 2, "num_gpus": 0}}


@pytest.fixture
def node_up_100_s(monkeypatch):
    """The cluster: one node of 4 CPUs (2 scene slots at $18 an hour), up for 100 s ($1)."""
    monkeypatch.setattr(budget, "node_table",
                        lambda: [gcs_node("ab" * 28, time.time() - 100, 4.0)])


def success(attempt: int, duration_s: float) -> dict:
    return {"attempt": attempt, "failure_class": None, "duration_s": duration_s}


def test_costs_in_steps_take_this_runs_median_seconds_per_step(node_up_100_s):
    ray = LocalRay()
    b = Budget(ray, plan_with(2.0), {"a": 100, "b": 100, "c": 100, "big": 30000}, seconds=False)
    [g] = ray.actors
    assert g.may_start("a", 1, "ab" * 28) is None
    b.attempt_done("a", {"attempt": 1, "failure_class": "xserver", "duration_s": 0.1})
    b.update()
    assert g.may_start("big", 1, "ab" * 28) is None  # no success yet: nothing known, 0
    b.attempt_done("big", {"attempt": 1, "failure_class": "timeout", "duration_s": None})
    for name, seconds in (("a", 1.0), ("b", 3.0), ("c", 1.2)):
        b.attempt_done(name, success(2, seconds))
    b.update()
    # The median: 0.012 s a step, so 360 s for "big", $1.80 at $18 an hour, over $2 with $1 spent;
    # the attempts that ended no longer count.
    assert g.may_start("big", 2, "ab" * 28) == (
        "budget: $1.00 spent, $0.00 committed by 0 running scenes and $1.80 for the next would "
        "pass the budget of $2.00")


def test_costs_in_seconds_are_taken_as_they_are(node_up_100_s, capsys):
    ray = LocalRay()
    Budget(ray, plan_with(2.0), {"a": 300.0}, seconds=True)
    assert "$1.50 for the next" in ray.actors[0].may_start("a", 1, "ab" * 28)
    assert "warning" not in capsys.readouterr().out


def test_a_budget_without_prices_says_so(node_up_100_s, capsys):
    Budget(LocalRay(), plan_with(2.0, node_types={}), {"a": 1.0}, seconds=True)
    assert "no node of the cluster has a price" in capsys.readouterr().out


# -- what the summary records --------------------------------------------------------------------
def test_launch_phases_are_read_or_ignored_with_one_warning(tmp_path, capsys):
    path = tmp_path / "launch-phases.json"
    assert read_launch_phases(path) is None  # none measured: nothing said
    path.write_text('[{"name": "ray up", "seconds": 61.5}]')
    assert read_launch_phases(path) == [{"name": "ray up", "seconds": 61.5}]
    assert capsys.readouterr().out == ""
    for text in ('[{"name": "ray up", "seconds": -1}]', '{"ray up": 61.5}', "[{", "\xff"):
        path.write_bytes(text.encode("latin-1"))
        assert read_launch_phases(path) is None
        [line] = capsys.readouterr().out.splitlines()
        assert line.startswith(f"warning: ignoring {path}: ")


def test_the_summary_records_a_budget_only_when_the_plan_has_one():
    plan = {"run_id": "r1", "module": "demo", "metadata": "level2", "store": "/tmp/s",
            "summary_key": "f/s.json", "scenes": []}
    assert "budget_usd" not in RunSummary(dict(plan, budget_usd=None)).doc
    assert RunSummary(dict(plan, budget_usd=2.5)).doc["budget_usd"] == 2.5


# -- the driver, on a real Ray -------------------------------------------------------------------
USD = r"(?:\$\d+\.\d\d|<\$0\.01)"
STOP_REASON = re.compile(
    rf"^budget: {USD} spent, ({USD}) committed by (\d+) running scenes? and {USD} for the next "
    r"would pass the budget of \$(\d+\.\d\d); (\d+) scenes? not started \(run again with "
    r"resume to continue\)$")


def test_small_budget_stops_starting_scenes_and_a_resume_runs_the_rest(make_plan):
    """Two slots on a local Ray of the driver's own: the long scene in one, the short ones one
    after another in the other. Once the node's cost plus the long scene's rest would pass the
    budget, no scene starts, the long one runs to its end, and the run is interrupted.

    At a cent a second, $0.30 lets the first scenes start if Ray starts them within 30 s of its
    node (~2 s here, more on a loaded machine); the node's time plus the long scene's rest (~$0.40
    once the first short scene gave the seconds per step) passes it while the long scene still
    runs, however late Ray started it."""
    plan = make_plan(node_types=LOCAL_PRICE, budget_usd=0.3, retries=1, step_seconds=0.01)
    plan.scene("long", 4000)  # ~40 s
    plan.scene("flaky", 300, {"xserver_fail_attempts": 1})  # fails; its retry queues last
    for i in range(10):
        plan.scene(f"short_{i}", 50)  # ~0.7 s
    (plan.dir / "launch-phases.json").write_text(
        json.dumps([{"name": "install Ray", "seconds": 12.5}, {"name": "start Ray", "seconds": 0}]))
    proc = plan.run("--num-cpus", "2", ray_address="local")
    assert proc.returncode == 130

    summary = plan.summary()
    assert summary["state"] == "interrupted" and summary["budget_usd"] == 0.3
    assert summary["launch_phases"] == [{"name": "install Ray", "seconds": 12.5},
                                        {"name": "start Ray", "seconds": 0}]
    reason = STOP_REASON.match(summary["stop_reason"])
    assert reason, summary["stop_reason"]
    assert f"mcs-pipeline: interrupted: {summary['stop_reason']}; summary " in proc.stdout
    scenes = {s["name"]: s for s in summary["scenes"]}
    # What started ran to its end; the rest never started: PENDING, no attempt.
    assert scenes["long"]["status"] == "SUCCESS" and scenes["long"]["attempts"] == 1
    # The long scene was running when the gate refused, its expected rest (this run's seconds per
    # step times its steps, the driver told the gate) counted.
    assert int(reason[2]) >= 1 and reason[1] != "$0.00"
    # The retry was refused: its first attempt stays, and it stays PENDING for a resume.
    assert scenes["flaky"]["status"] == "PENDING"
    assert [a["failure_class"] for a in scenes["flaky"]["history"]] == ["xserver"]
    shorts = [scenes[f"short_{i}"] for i in range(10)]
    done = [s for s in shorts if s["status"] == "SUCCESS"]
    not_started = [s for s in shorts if s["status"] == "PENDING"]
    assert len(done) + len(not_started) == 10 and done and not_started
    assert all(s["attempts"] == 0 and s["history"] == [] for s in not_started)
    assert int(reason[4]) == len(not_started) + 1  # with flaky's retry
    assert summary["totals"]["pending"] == len(not_started) + 1
    assert summary["nodes"][0]["usd_per_hour"] == 36.0

    plan.set(budget_usd=None)
    proc = plan.run("--resume")
    assert proc.returncode == 0
    summary = plan.summary()
    assert summary["state"] == "finished" and summary["totals"]["succeeded"] == 12
    assert "budget_usd" not in summary and "stop_reason" not in summary
    assert {s["name"] for s in summary["scenes"] if not s["resumed"]} == \
        {"flaky"} | {s["name"] for s in not_started}


def test_a_scene_whose_committed_cost_alone_passes_the_budget_never_starts(make_plan):
    """The previous run says "huge" takes a day: at $0.36 an hour that is over the $1 budget,
    so it is refused, and so is the small scene after it, although it would fit."""
    price = {"local": dict(LOCAL_PRICE["local"], usd_per_hour=0.36)}
    plan = make_plan(node_types=price, budget_usd=1.0, resources={"num_cpus": 4, "num_gpus": 0})
    plan.scene("huge", 50).scene("small", 5)
    # Asked before anything else: a refused scene does not even start its node's services.
    services = plan.dir / "deploy" / "services.sh"
    services.write_text(f"#!/bin/sh\ntouch {plan.dir.parent / 'services-started'}\n")
    services.chmod(0o755)
    plan.set(node_services="deploy/services.sh")
    plan.put_previous("earlier", [{"name": "huge", "duration_s": 86400.0},
                                  {"name": "small", "duration_s": 1.0}])
    proc = plan.run()
    assert proc.returncode == 130
    summary = plan.summary()
    assert summary["state"] == "interrupted"
    assert all(s["status"] == "PENDING" and s["attempts"] == 0 for s in summary["scenes"])
    reason = STOP_REASON.match(summary["stop_reason"])
    assert reason and reason[2] == "0" and reason[4] == "2", summary["stop_reason"]
    assert "$8.64 for the next" in summary["stop_reason"]
    assert not (plan.dir.parent / "services-started").exists()


def named_gates(ray) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(budget.GATE_PREFIX)]


@pytest.mark.parametrize("budget_usd", [None, 100.0], ids=["no_budget", "budget"])
def test_a_gate_only_with_a_budget(make_plan, budget_usd):
    """A budget big enough: every scene runs, finished. No budget: no gate, nothing recorded."""
    import ray

    plan = make_plan(node_types=LOCAL_PRICE, budget_usd=budget_usd, step_seconds=0.01)
    plan.scene("g_a", 100).scene("g_b", 100).scene("g_c", 100)
    (plan.dir / "launch-phases.json").write_text('[{"name": "ray up"}]')  # no seconds
    before = set(named_gates(ray))
    driver = plan.start()
    seen = wait_for(lambda: set(named_gates(ray)) - before or driver.proc.poll() is not None, 60)
    assert driver.finish() == 0
    summary = plan.summary()
    assert summary["state"] == "finished" and summary["totals"]["succeeded"] == 3
    assert "stop_reason" not in summary and "launch_phases" not in summary
    assert sum("warning: ignoring" in line and "launch-phases.json" in line
               for line in driver.lines) == 1
    if budget_usd is None:
        assert seen is True  # the driver ended without a gate ever showing
        assert "budget_usd" not in summary
    else:
        assert seen is not True and summary["budget_usd"] == 100.0
