"""Steps of Ray 2.60's own AWS bootstrap (ray/autoscaler/_private/aws/config.py), run against moto
for the preflight's tests (test/preflight.test.ts), with AWS_ENDPOINT_URL and the credentials in
the environment:

  subnets CASES OUT   CASES: a JSON list of cluster configs. For each, _configure_from_network_
                      interfaces then _configure_subnet, as bootstrap_aws runs them; OUT gets, per
                      case, {"subnets": {node type: SubnetIds}} or {"abort": Ray's message}.
  iam-role CONFIG     _configure_iam_role: with no instance profile ray-autoscaler-v1 in the
                      account, Ray creates it and its role, as on a first `ray up` (its two
                      15-second waits for IAM to propagate are skipped: moto needs none).
"""

import json
import sys

import click
from ray.autoscaler._private.aws import config as aws_config


def subnets(cases_file, out_file):
    with open(cases_file) as f:
        cases = json.load(f)
    results = []
    for case in cases:
        try:
            configured = aws_config._configure_subnet(
                aws_config._configure_from_network_interfaces(case)
            )
        except (click.ClickException, AssertionError, KeyError) as e:
            # KeyError: an abort whose message holds a set's repr, which cli_logger then formats.
            results.append({"abort": f"{type(e).__name__}: {e}"})
            continue
        results.append(
            {
                "subnets": {
                    name: node_type["node_config"]["SubnetIds"]
                    for name, node_type in configured["available_node_types"].items()
                }
            }
        )
    with open(out_file, "w") as f:
        json.dump(results, f)


def iam_role(config_file):
    with open(config_file) as f:
        config = json.load(f)
    aws_config.time.sleep = lambda seconds: None
    config["head_node"] = {}
    aws_config._configure_iam_role(config)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"subnets": subnets, "iam-role": iam_role}[command](*args)
