"""The S3 store against a moto server: the same keys as the local store, under the prefix; in a
bucket with versioning on, each write's version, which the scene's outputs record."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from pathlib import Path

import boto3
import pytest
from mcs_pipeline.mcs_outputs import History, Outputs
from mcs_pipeline import store as store_module
from mcs_pipeline.scene_task import upload_outputs
from mcs_pipeline.store import LocalStore, S3Store, version_of


def new_bucket(versioned: bool = False) -> str:
    name = f"mcs-test-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def bucket(s3_env):
    return new_bucket()


@pytest.fixture
def versioned_bucket(s3_env):
    return new_bucket(versioned=True)


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
    # A bucket without versioning: no versions recorded, the report links the keys as they are.
    assert all("versions" not in s["outputs"] for s in summary["scenes"])
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


def version_bytes(bucket: str, key: str, version: str) -> bytes:
    s3 = boto3.client("s3", region_name="us-east-1")
    return s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()


def test_a_write_returns_the_version_it_made(versioned_bucket, bucket, tmp_path):
    """put_bytes and put_file return the VersionId of exactly their write, which keeps the bytes
    written then after a later write replaced them; None without versioning or on local disk."""
    store = S3Store(versioned_bucket, "runs")
    source = tmp_path / "history.json"
    source.write_text('{"run": 1}')
    first = store.put_file("f/h.json", str(source))
    second = store.put_bytes("f/h.json", b'{"run": 2}')
    assert first and second and first != second
    assert version_bytes(versioned_bucket, "runs/f/h.json", first) == b'{"run": 1}'
    assert version_bytes(versioned_bucket, "runs/f/h.json", second) == b'{"run": 2}'
    assert store.get_bytes("f/h.json") == b'{"run": 2}'
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.head_object(Bucket=versioned_bucket, Key="runs/f/h.json",
                          VersionId=first)["ContentType"] == "application/json"

    assert S3Store(bucket).put_file("f/h.json", str(source)) is None
    assert S3Store(bucket).put_bytes("f/h.json", b"x") is None
    assert LocalStore(str(tmp_path / "store")).put_file("f/h.json", str(source)) is None
    # Once versioning is suspended S3 gives new objects the version "null" (moto sends none).
    assert version_of({"VersionId": "null"}) is None


def test_scene_outputs_record_each_keys_version(versioned_bucket, bucket, tmp_path, monkeypatch):
    """upload_outputs records the version of the log, the history and every video it wrote."""
    # The tasks' store cache, for this test alone: the package ships by value, globals included.
    monkeypatch.setattr(store_module, "_open", {})
    eval_dir = tmp_path / "eval"
    (eval_dir / "SCENE_HISTORY").mkdir(parents=True)
    history = eval_dir / "SCENE_HISTORY" / "s1-20260101-000000.json"
    history.write_text('{"score": {}}')
    video = tmp_path / "visual.mp4"
    video.write_bytes(b"mp4")
    log = tmp_path / "scene.log"
    log.write_text("log")
    found = Outputs(History(history, "20260101-000000", None), {"visual": video})
    names = {"folder": "f", "movies_folder": "m", "prefix": "e_level2_t"}

    def outputs(store: str) -> dict:
        return upload_outputs({"names": names, "store": store}, "s1", log, found, datetime.now())

    out = outputs(f"s3://{versioned_bucket}")
    keys = [out["log"], out["history"], *out["videos"]]
    assert keys == ["f/e_level2_t_s1_20260101-000000_log.txt", "f/e_level2_t_s1.json",
                    "m/e_level2_t_s1_visual.mp4"]
    assert sorted(out["versions"]) == sorted(keys)
    for key, source in zip(keys, [log, history, video]):
        assert version_bytes(versioned_bucket, key, out["versions"][key]) == \
            Path(source).read_bytes()
    again = outputs(f"s3://{versioned_bucket}")
    assert all(again["versions"][k] != out["versions"][k] for k in keys)

    assert "versions" not in outputs(f"s3://{bucket}")
    assert "versions" not in outputs(str(tmp_path / "store"))
