"""The run's budget (plan `budget_usd`): the driver starts no new scene once the spend so far plus
the committed cost of the running scenes would pass it.

The spend so far is priced as the report prices a run (src/cost.ts estimateCost): each node's
hours in Ray's node table (nodes.py) times its type's usd_per_hour, a node still alive counted up
to now, an unpriced node counting nothing (so the cluster's time before the driver started counts
too). A running scene's committed cost is what it is still expected to take: its expected
remaining seconds times the price of the scene slot it holds (its node's price over the scenes
the node holds at once).

The driver submits every scene to Ray at once and Ray starts each as a slot frees up, so whether a
scene may start is decided when it starts: by the gate, a small actor the scene task asks before
it does anything (scene_task.budget_refusal). The gate refuses when the spend so far
(extrapolated from the driver's last look by the price of the nodes alive then), plus the
committed cost of the running scenes and of this one, would pass the budget; once it refused, it
refuses every later start, retries too, so no cheaper scene slips in after a dearer one was
turned away. The driver keeps it informed (Budget): on every wake-up for finished scenes and at
least every UPDATE_INTERVAL_S.
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import datetime
from statistics import median

from .nodes import node_records, node_table
from .summary import warn

HOUR_S = 3600.0
UPDATE_INTERVAL_S = 2.0
GATE_PREFIX = "mcs-budget-"
# The plan's resource requests (plan.schema.json `resources`) as Ray names a node's resources.
RAY_RESOURCE = {"num_cpus": "CPU", "num_gpus": "GPU"}


def epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def spend_usd(nodes: list[dict], now_s: float) -> float:
    """What the nodes (nodes.node_records) cost up to `now_s` (epoch seconds)."""
    total = 0.0
    for node in nodes:
        if node["usd_per_hour"] is None:
            continue
        end = epoch_s(node["ended_at"]) if node["ended_at"] else now_s
        total += max(0.0, end - epoch_s(node["started_at"])) / HOUR_S * node["usd_per_hour"]
    return total


def burn_usd_per_hour(nodes: list[dict]) -> float:
    """What the nodes alive cost an hour: how the spend grows until the driver looks again."""
    return sum(n["usd_per_hour"] or 0.0 for n in nodes if n["ended_at"] is None)


def scene_slots(node_resources: dict[str, float], requests: dict[str, float]) -> int:
    """How many scenes a node holds at once: what its resources fit of each non-zero request,
    the fewest of them; at least 1 (a node too small for a scene is charged whole)."""
    fits = [node_resources.get(RAY_RESOURCE[name], 0.0) / amount
            for name, amount in requests.items() if amount > 0]
    # The epsilon: 0.6 / 0.2 is 2.9999999999999996 in floating point.
    return max(1, math.floor(min(fits) + 1e-9)) if fits else 1


def slot_usd_per_hour(nodes: list[dict], resources: dict[str, dict],
                      requests: dict[str, float]) -> dict[str, float]:
    """Node id -> what one scene slot of it costs an hour, for the nodes alive (unpriced: 0)."""
    return {n["node_id"]: (n["usd_per_hour"] or 0.0)
            / scene_slots(resources.get(n["node_id"], {}), requests)
            for n in nodes if n["ended_at"] is None}


def committed_usd(expected_s: float, elapsed_s: float, usd_per_hour: float) -> float:
    """A scene's committed cost: the seconds it is still expected to take, at its slot's price
    (none once it ran longer than expected: what it takes beyond is in the spend)."""
    return max(0.0, expected_s - elapsed_s) * usd_per_hour / HOUR_S


def format_usd(usd: float) -> str:
    """As the report writes amounts (src/report.ts formatUsd)."""
    return "<$0.01" if 0 < usd < 0.005 else f"${usd:.2f}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Gate:
    """The actor's body (wrapped by ray.remote in Budget). Ray runs its calls one at a time."""

    def __init__(self, budget_usd: float, costs: dict[str, float], clock=time.monotonic):
        """`costs`: each scene's expected cost (schedule.expected_costs), seconds or steps."""
        self.budget, self.costs, self.clock = budget_usd, costs, clock
        self.spend, self.burn, self.seen_at = 0.0, 0.0, clock()
        self.slots: dict[str, float] = {}   # node id -> USD an hour of one scene slot
        self.seconds_per_cost = 0.0         # 0: no expected duration known yet
        self.running: dict[tuple[str, int], tuple[str, float]] = {}  # -> (node id, started)
        self.refusal: str | None = None

    def update(self, nodes: dict | None, seconds_per_cost: float,
               finished: list[tuple[str, int]]) -> None:
        """From the driver. `nodes`: {spend_usd, burn_usd_per_hour, slot_usd_per_hour} as it read
        them just now (None: it could not; the gate goes on extrapolating the last)."""
        if nodes is not None:
            self.spend, self.burn = nodes["spend_usd"], nodes["burn_usd_per_hour"]
            self.slots, self.seen_at = nodes["slot_usd_per_hour"], self.clock()
        self.seconds_per_cost = seconds_per_cost
        for name, attempt in finished:
            self.running.pop((name, attempt), None)

    def may_start(self, name: str, attempt: int, node_id: str) -> str | None:
        """None: start (the scene counts as running from now); else why not."""
        if self.refusal is not None:
            return self.refusal
        now = self.clock()
        spend = self.spend + self.burn * (now - self.seen_at) / HOUR_S
        running = sum(self.committed(n, node, now - started)
                      for (n, _), (node, started) in self.running.items())
        own = self.committed(name, node_id, 0.0)
        if spend + running + own > self.budget:
            self.refusal = (f"budget: {format_usd(spend)} spent, {format_usd(running)} committed "
                            f"by {plural(len(self.running), 'running scene')} and "
                            f"{format_usd(own)} for the next would pass the budget of "
                            f"{format_usd(self.budget)}")
            return self.refusal
        self.running[(name, attempt)] = (node_id, now)
        return None

    def committed(self, name: str, node_id: str, elapsed_s: float) -> float:
        # A node the driver has not seen yet (just started): priced as the dearest slot known.
        price = self.slots.get(node_id, max(self.slots.values(), default=0.0))
        return committed_usd(self.costs.get(name, 0.0) * self.seconds_per_cost, elapsed_s, price)


class Budget:
    """The driver's side: starts the gate and keeps it informed."""

    def __init__(self, ray, plan: dict, costs: dict[str, float], seconds: bool):
        """`seconds`: whether `costs` are seconds (a previous run measured them); else steps,
        scaled by the median seconds per step of this run's successful attempts."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.plan, self.costs, self.seconds = plan, costs, seconds
        self.rates: list[float] = []  # seconds per step of this run's successes
        self.finished: list[tuple[str, int]] = []
        self.next_update = 0.0
        self.unreadable = False
        # On the driver's node (the head): a worker that goes away must not take it along.
        here = ray.get_runtime_context().get_node_id()
        self.gate = ray.remote(num_cpus=0, max_restarts=0)(Gate).options(
            name=f"{GATE_PREFIX}{plan['run_id']}-{secrets.token_hex(3)}",
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(plan["budget_usd"], costs)
        reading = self.read_nodes()
        # Waited for: the gate must know the prices before the first scene asks it.
        ray.get(self.send(reading))
        if reading is not None and not any(reading["slot_usd_per_hour"].values()):
            warn(f"budget {format_usd(plan['budget_usd'])}: no node of the cluster has a price "
                 "(plan node_types), so nothing counts against it")

    def attempt_done(self, name: str, result: dict) -> None:
        """A scene's attempt ended (a refused one never started: not for this)."""
        self.finished.append((name, result["attempt"]))
        duration, cost = result.get("duration_s"), self.costs.get(name, 0.0)
        # Only successes: a failure's duration says little about how long the scene takes.
        if not self.seconds and result["failure_class"] is None and duration and cost > 0:
            self.rates.append(duration / cost)

    def due_in(self) -> float:
        return max(0.0, self.next_update - time.monotonic())

    def update(self) -> None:
        self.send(self.read_nodes())

    def send(self, reading: dict | None):
        """Tell the gate the reading (read_nodes), the seconds per unit of expected cost, and the
        attempts that ended since; returns the call's ref."""
        if self.seconds:
            seconds_per_cost = 1.0
        else:  # nothing known yet: 0, the scenes' expected rest is unknown
            seconds_per_cost = median(self.rates) if self.rates else 0.0
        ref = self.gate.update.remote(reading, seconds_per_cost, self.finished)
        self.finished = []
        self.next_update = time.monotonic() + UPDATE_INTERVAL_S
        return ref

    def read_nodes(self) -> dict | None:
        """What the gate is told of the cluster now (Gate.update); None when it cannot be read."""
        try:
            table = node_table()
            now = time.time()
            records = node_records(table, self.plan.get("node_types") or {})
            resources = {info.node_id.hex(): dict(info.resources_total) for info in table}
        except Exception as error:  # the gate extrapolates the last reading meanwhile
            if not self.unreadable:
                warn(f"budget: the cluster's node table could not be read ({error})")
            self.unreadable = True
            return None
        return {"spend_usd": spend_usd(records, now),
                "burn_usd_per_hour": burn_usd_per_hour(records),
                "slot_usd_per_hour": slot_usd_per_hour(records, resources, self.plan["resources"])}
