"""The cluster's nodes as Ray itself recorded them, for the report's cost estimate: each node's
type, instance type and price (from the plan's node_types) and when it started and ended.

Ray's GCS keeps a row per node it has seen (alive or dead) with start and end times in ms; the
autoscaler names each node's type through RAY_NODE_TYPE_NAME (v2 sets it on every node it starts,
`ray up` on the head). Where Ray left the type empty (autoscaler v1 workers), the plan tells it
when only one node type can be meant.
"""
from datetime import datetime, timezone

from .scene_task import iso

NODE_GROUP_LABEL = "ray.io/node-group"


def node_records(node_table, node_types: dict) -> list[dict]:
    """One record per row of Ray's node table (GcsNodeInfo messages), oldest first."""
    records = []
    for info in sorted(node_table, key=lambda i: i.start_time_ms):
        head = bool(info.is_head_node)
        node_type = (info.node_type_name or dict(info.labels).get(NODE_GROUP_LABEL)
                     or implied_type(node_types, head))
        declared = node_types.get(node_type) or {}
        records.append({
            "node_id": info.node_id.hex(),
            "address": info.node_manager_address,
            "node_type": node_type,
            "instance_type": info.instance_type_name or declared.get("instance_type"),
            "head": head,
            "spot": bool(declared.get("spot")),
            "started_at": ms_iso(info.start_time_ms),
            "ended_at": ms_iso(info.end_time_ms) if info.end_time_ms else None,
            "usd_per_hour": declared.get("usd_per_hour"),
            "price_source": declared.get("price_source"),
        })
    return records


def implied_type(node_types: dict, head: bool) -> str | None:
    """The plan's head type for the head; for a worker, the only worker type (Ray's local provider
    has one type for both)."""
    heads = [name for name, t in node_types.items() if t["head"]]
    workers = [name for name, t in node_types.items() if not t["head"]] or heads
    candidates = heads if head else workers
    return candidates[0] if len(candidates) == 1 else None


def ms_iso(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, timezone.utc))


def cluster_nodes(plan: dict) -> list[dict] | None:
    """This cluster's nodes, from the Ray this driver is connected to; None (and a line saying
    why) when the node table cannot be read: the cost is then unknown, the run unaffected."""
    try:
        return node_records(node_table(), plan.get("node_types") or {})
    except Exception as error:  # the cost estimate must never fail a run
        print(f"mcs-pipeline: the cluster's node table could not be read ({error}); the report "
              "will have no cost estimate", flush=True)
        return None


def node_table() -> list:
    """Ray's node table (GcsNodeInfo messages) from the GCS this process is connected to."""
    from ray._private.worker import global_worker  # no public API has the start/end times

    return list(global_worker.gcs_client.get_all_node_info().values())
