"""Scenes of an s3:// scene set: the driver fetches them itself (on the head node, or locally),
so they never pass through the runner. The plan lists each by `uri`, named by its file, with no
expected cost or category: all three come from the scene (its JSON `name`, as a local set and
MCS name it; goal.last_step, goal.category), read here before scheduling.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

# Thousands of small objects: enough requests in flight that listing-sized sets take seconds.
FETCH_THREADS = 32


# As src/scenes.ts SCENE_NAME: a scene's name becomes part of file names and keys.
SCENE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SceneSetError(Exception):
    """A scene of the set that cannot be read, or is not an MCS scene."""


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def scene_fields(uri: str, text: str) -> dict:
    """name (when the scene has one), expected_cost and category as src/scenes.ts reads them
    from a scene file."""
    try:
        doc = json.loads(text)
    except ValueError as error:
        raise SceneSetError(f"{uri} is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise SceneSetError(f"{uri} is not an MCS scene (expected a JSON object)")
    goal = doc.get("goal") if isinstance(doc.get("goal"), dict) else {}
    last_step = goal.get("last_step", 1)
    if isinstance(last_step, bool) or not isinstance(last_step, (int, float)) or last_step <= 0:
        raise SceneSetError(f"{uri}: goal.last_step must be a positive number")
    category = goal.get("category")
    named = isinstance(category, str) and category.strip() != ""
    fields = {"expected_cost": last_step, "category": category.strip() if named else None}
    if "name" in doc:
        if not isinstance(doc["name"], str) or not SCENE_NAME.match(doc["name"]):
            raise SceneSetError(f'{uri}: "name" must be letters, digits, ".", "-" or "_"')
        fields["name"] = doc["name"]
    return fields


def fetch_scenes(scenes: list[dict], threads: int = FETCH_THREADS) -> tuple[int, int]:
    """Fetch every plan scene that has a `uri`, in place: its `text`, `expected_cost` and
    `category`. Returns (scenes fetched, bytes). boto3 reads AWS_ENDPOINT_URL and the node's
    instance profile (s3:GetObject on the scenes' bucket) itself."""
    todo = [s for s in scenes if "uri" in s]
    if not todo:
        return 0, 0
    import boto3

    client = boto3.client("s3")  # thread-safe: one for all the threads

    def fetch(scene: dict) -> int:
        bucket, key = split_uri(scene["uri"])
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:
            raise SceneSetError(f"{scene['uri']} could not be read: {error}") from None
        text = body.decode("utf-8", errors="replace")
        scene.update(scene_fields(scene["uri"], text), text=text)
        return len(body)

    with ThreadPoolExecutor(max_workers=min(threads, len(todo))) as pool:
        sizes = list(pool.map(fetch, todo))
    seen: dict[str, str] = {}
    for scene in scenes:
        where = scene.get("uri") or scene.get("file")
        if scene["name"] in seen:
            raise SceneSetError(f"{seen[scene['name']]} and {where} are both named {scene['name']}")
        seen[scene["name"]] = where
    return len(todo), sum(sizes)


def fetch_logged(scenes: list[dict]) -> None:
    start = time.monotonic()
    count, size = fetch_scenes(scenes)
    if count:
        print(f"mcs-pipeline: fetched {count} scenes ({size} bytes) from S3 in "
              f"{time.monotonic() - start:.1f} s", flush=True)
