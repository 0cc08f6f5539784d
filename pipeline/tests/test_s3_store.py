"""The S3 store against a moto server: the same keys as the local store, under the prefix."""

from __future__ import annotations

import json
import re
import uuid

import boto3
import pytest


@pytest.fixture
def bucket(s3_env):
    name = f"mcs-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=name)
    return name


def objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def run_against_s3(make_plan, bucket, s3_env):
    plan = make_plan(store=f"s3://{bucket}/runs/r1", retries=0)
    plan.scene("s3_a", 5).scene("s3_b", 5)
    proc = plan.run(env=s3_env)
    stored = objects(bucket)
    summary_key = f"runs/r1/{plan.plan['summary_key']}"
    assert summary_key in stored
    return plan, proc, stored, json.loads(stored[summary_key])


def check_s3_run(plan, proc, stored, summary):
    assert summary["store"] == plan.plan["store"] and summary["state"] == "finished"
    assert summary["totals"]["succeeded"] == 2, [s["failure_class"] for s in summary["scenes"]]
    assert proc.returncode == 0
    for scene in summary["scenes"]:
        outputs = scene["outputs"]
        assert outputs["history"] == plan.history_key(scene["name"])
        assert re.fullmatch(plan.log_key_pattern(scene["name"]), outputs["log"])
        history = json.loads(stored[f"runs/r1/{outputs['history']}"])
        assert history["info"]["name"] == scene["name"]
        assert b"[demo] scene" in stored[f"runs/r1/{outputs['log']}"]
    assert all(k.startswith("runs/r1/") for k in stored)
    assert not plan.store_dir.exists()  # nothing went to a local directory
    # Each object says what it is, so a browser shows a log or history the report links to.
    s3 = boto3.client("s3", region_name="us-east-1")
    types = {k: s3.head_object(Bucket=bucket_of(plan), Key=k)["ContentType"] for k in stored}
    assert types and all(types[k] == ("text/plain; charset=utf-8" if k.endswith(".txt")
                                      else "application/json") for k in types), types


def bucket_of(plan) -> str:
    return plan.plan["store"][len("s3://"):].split("/")[0]


def test_s3_store(make_plan, bucket, s3_env):
    check_s3_run(*run_against_s3(make_plan, bucket, s3_env))
