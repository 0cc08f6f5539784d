"""An s3:// scene set: the driver fetches each scene from S3 itself (moto here) and reads its
goal.last_step and goal.category; nothing of it is in the plan directory."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from mcs_pipeline.driver import load_plan
from mcs_pipeline.scene_set import SceneSetError, fetch_scenes, scene_fields
from mcs_pipeline.schedule import expected_costs, longest_first


@pytest.fixture
def bucket(s3_env):
    name = f"mcs-scenes-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_the_driver_reads_cost_and_category_from_s3(make_plan, bucket):
    plan = make_plan()
    plan.s3_scene(bucket, "short", 2).s3_scene(bucket, "long", 40, category=None)
    plan.s3_scene(bucket, "mid", 10, category=" intuitive physics ")
    assert not list((plan.dir / "scenes").iterdir())  # nothing in the plan directory
    loaded = load_plan(plan.dir)
    by_name = {s["name"]: s for s in loaded["scenes"]}
    assert {n: (s["expected_cost"], s["category"]) for n, s in by_name.items()} == {
        "short": (2, "retrieval"), "long": (40, None), "mid": (10, "intuitive physics")}
    assert json.loads(by_name["long"]["text"])["name"] == "long"
    # Longest first, from what the driver read (no previous run).
    costs = expected_costs(loaded["scenes"], None)
    assert longest_first(list(by_name), costs) == ["long", "mid", "short"]


def test_a_run_from_s3_scenes(make_plan, bucket, s3_env):
    plan = make_plan()
    for i in range(12):
        plan.s3_scene(bucket, f"s3_scene_{i:02d}", 1 + i, key=f"eval/set/s3_scene_{i:02d}.json")
    proc = plan.run(env=s3_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mcs-pipeline: fetched 12 scenes" in proc.stdout
    summary = plan.summary()
    assert summary["totals"]["succeeded"] == 12
    assert {s["category"] for s in summary["scenes"]} == {"retrieval"}
    assert sorted(s["expected_cost"] for s in summary["scenes"]) == list(range(1, 13))
    assert not list((plan.dir / "scenes").iterdir())


def test_a_scene_gone_from_s3_stops_the_driver_with_a_clear_line(make_plan, bucket, s3_env):
    plan = make_plan()
    plan.s3_scene(bucket, "here").s3_scene(bucket, "gone")
    boto3.client("s3").delete_object(Bucket=bucket, Key="scenes/gone.json")
    proc = plan.run(env=s3_env)
    assert proc.returncode == 2
    assert f"s3://{bucket}/scenes/gone.json could not be read" in proc.stderr


@pytest.mark.parametrize("text, problem", [
    ("{", "is not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"goal": {"last_step": 0}}', "goal.last_step must be a positive number"),
    ('{"goal": {"last_step": true}}', "goal.last_step must be a positive number"),
])
def test_scene_fields_rejects_what_is_not_a_scene(text, problem):
    with pytest.raises(SceneSetError, match=problem):
        scene_fields("s3://b/x.json", text)


def test_scene_fields_defaults_as_the_runner_does():
    assert scene_fields("s3://b/x.json", "{}") == {"expected_cost": 1, "category": None}
    assert scene_fields("s3://b/x.json", '{"name": "y.json"}')["name"] == "y.json"
    with pytest.raises(SceneSetError, match='"name" must be letters'):
        scene_fields("s3://b/x.json", '{"name": "../y"}')


def test_a_scene_is_named_by_its_json_name_whatever_its_file(make_plan, bucket, s3_env):
    """As a local set and MCS name it: outputs found, summary and keys by that name."""
    plan = make_plan()
    plan.s3_scene(bucket, "file_name_a", 3)
    boto3.client("s3").put_object(Bucket=bucket, Key="scenes/file_name_a.json", Body=json.dumps(
        {"name": "json_name_a", "goal": {"last_step": 3, "action_list": []}}).encode())
    proc = plan.run(env=s3_env)
    assert proc.returncode == 0, proc.stdout[-2000:]
    [scene] = plan.summary()["scenes"]
    assert scene["name"] == "json_name_a" and scene["status"] == "SUCCESS"
    assert scene["outputs"]["history"] == plan.history_key("json_name_a")


def test_two_scenes_of_one_name_stop_the_driver(make_plan, bucket, s3_env):
    plan = make_plan()
    plan.s3_scene(bucket, "one", 3).s3_scene(bucket, "two", 3)
    boto3.client("s3").put_object(Bucket=bucket, Key="scenes/two.json", Body=json.dumps(
        {"name": "one", "goal": {"last_step": 3}}).encode())
    proc = plan.run(env=s3_env)
    assert proc.returncode == 2
    assert f"s3://{bucket}/scenes/one.json and s3://{bucket}/scenes/two.json are both named " \
        "one" in proc.stderr


def test_fetch_scenes_leaves_file_scenes_alone():
    scenes = [{"name": "a", "file": "scenes/a.json", "expected_cost": 3, "category": None}]
    assert fetch_scenes(scenes) == (0, 0)
    assert "text" not in scenes[0]
