"""Ray's own AWS cluster launcher code, driven on a rendered cluster YAML, without SSH.

Run by test/aws-provider.test.ts with the test venv's Python, AWS_ENDPOINT_URL pointing at a
recording proxy in front of moto (loopback), and credentials of a role that carries the README's
policy. What `ray up` and `ray down` do against EC2 and IAM, minus everything that would reach a
node:

  launch CONFIG OUT   `ray up`'s cloud side: commands._bootstrap_config (the AWS bootstrap:
                      IAM instance profile, key pair, subnets, security group), then the head
                      node as commands.get_or_create_head_node creates it and one worker as the
                      head's autoscaler would (node_launcher.NodeLauncher._launch_node), both
                      through AWSNodeProvider.create_node; then the head's status tag as the
                      updater sets it (AWSNodeProvider.set_node_tags).
  down CONFIG OUT     `ray down`: commands.teardown_cluster(workers_only=False). Its first step,
                      exec_cluster("ray stop"), runs `ray stop` on the head over SSH: it is
                      replaced by a stand-in that fails as an unreachable head does, and Ray's
                      teardown goes on as it does then (it catches the error and terminates).

Every connection to anything but loopback, and every ssh/rsync/scp process, is refused and
recorded in OUT ("network"): moto invents public addresses for its instances, and no test may
send them anything. OUT is JSON; a failure is reported there too ("error") and exits 1.
"""

import copy
import json
import os
import socket
import subprocess
import sys
import traceback

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
REFUSED_PROGRAMS = {"ssh", "rsync", "scp", "sftp", "sshpass"}
network = []


def guard_network():
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex

    def allowed(sock, address):
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        host = address[0] if isinstance(address, tuple) else str(address)
        if host in LOOPBACK:
            return True
        network.append(f"connect {host}:{address[1] if isinstance(address, tuple) else ''}")
        return False

    def guarded_connect(sock, address):
        if not allowed(sock, address):
            raise ConnectionRefusedError(f"test guard: no traffic to {address}")
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        if not allowed(sock, address):
            return 111  # ECONNREFUSED
        return connect_ex(sock, address)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex

    popen_init = subprocess.Popen.__init__

    def guarded_popen(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes)) else list(args)
        program = os.path.basename(str(argv[0]).split()[0]) if argv else ""
        if program in REFUSED_PROGRAMS:
            network.append(f"process {' '.join(map(str, argv))}")
            raise PermissionError(f"test guard: no {program} to a node")
        return popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded_popen


def load(config_file):
    import yaml

    with open(config_file) as f:
        return yaml.safe_load(f)


def instance_tags(provider, node_id):
    node = provider._get_node(node_id)
    return {t["Key"]: t["Value"] for t in node.tags or []}


def launch(config_file, out):
    from ray.autoscaler._private import commands
    from ray.autoscaler._private.util import hash_launch_conf
    from ray.autoscaler.tags import (
        NODE_KIND_HEAD,
        NODE_KIND_WORKER,
        STATUS_UNINITIALIZED,
        STATUS_UP_TO_DATE,
        TAG_RAY_LAUNCH_CONFIG,
        TAG_RAY_NODE_KIND,
        TAG_RAY_NODE_NAME,
        TAG_RAY_NODE_STATUS,
        TAG_RAY_USER_NODE_TYPE,
    )

    # `ray up --no-config-cache`, as the action runs it.
    config = commands._bootstrap_config(load(config_file), no_config_cache=True)
    out["bootstrapped"] = {
        "auth": config["auth"],
        "head_node": config.get("head_node", {}),
        "node_configs": {
            name: {
                key: value
                for key, value in node_type["node_config"].items()
                if key in ("KeyName", "SecurityGroupIds", "SubnetIds", "UserData")
            }
            for name, node_type in config["available_node_types"].items()
        },
    }
    provider = commands._get_node_provider(config["provider"], config["cluster_name"])

    # The head, as get_or_create_head_node makes it (commands.py).
    head_type = config["head_node_type"]
    head_config = copy.deepcopy(config.get("head_node", {}))
    head_config.update(config["available_node_types"][head_type]["node_config"])
    head_tags = {
        TAG_RAY_NODE_KIND: NODE_KIND_HEAD,
        TAG_RAY_USER_NODE_TYPE: head_type,
        TAG_RAY_LAUNCH_CONFIG: hash_launch_conf(head_config, config["auth"]),
        TAG_RAY_NODE_NAME: "ray-{}-head".format(config["cluster_name"]),
        TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED,
    }
    provider.create_node(head_config, head_tags, 1)
    heads = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_HEAD})
    assert len(heads) == 1, f"expected one head node, found {heads}"
    head = heads[0]

    # One worker, as the head's autoscaler launches it (node_launcher.py _launch_node).
    worker_type = next(t for t in config["available_node_types"] if t != head_type)
    worker_config = copy.deepcopy(config["available_node_types"][worker_type]["node_config"])
    worker_tags = {
        TAG_RAY_NODE_NAME: "ray-{}-worker".format(config["cluster_name"]),
        TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
        TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED,
        TAG_RAY_LAUNCH_CONFIG: hash_launch_conf(worker_config, config["auth"]),
        TAG_RAY_USER_NODE_TYPE: worker_type,
    }
    provider.create_node(worker_config, worker_tags, 1)

    # What the updater does once the head is set up (updater.py: set_node_tags).
    provider.set_node_tags(head, {TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE})

    nodes = provider.non_terminated_nodes({})
    out["nodes"] = {
        node: {
            "kind": provider.node_tags(node)[TAG_RAY_NODE_KIND],
            "tags": instance_tags(provider, node),
            "key_name": provider._get_node(node).key_name,
            # As RunInstances received it: moto keeps a `resolve:ssm:` ImageId as sent.
            "image_id": provider._get_node(node).image_id,
            "security_groups": [g["GroupId"] for g in provider._get_node(node).security_groups],
            "iam_instance_profile": (provider._get_node(node).iam_instance_profile or {}).get(
                "Arn"
            ),
        }
        for node in nodes
    }


def down(config_file, out):
    from ray.autoscaler._private import commands

    stopped = []

    def exec_cluster(config_file, *, cmd=None, **_):
        # Ray would SSH to the head here to run `ray stop`: the one step of teardown that
        # reaches a node. It fails as an unreachable head does; teardown_cluster goes on.
        stopped.append(cmd)
        raise RuntimeError("test guard: exec_cluster would SSH to the head node")

    commands.exec_cluster = exec_cluster
    commands.POLL_INTERVAL = 0.2  # between "terminate" and "are they gone"
    commands.teardown_cluster(
        config_file,
        yes=True,
        workers_only=False,
        override_cluster_name=None,
        keep_min_workers=False,
    )
    out["stopped_before_ssh"] = stopped
    config = commands._bootstrap_config(load(config_file))
    provider = commands._get_node_provider(config["provider"], config["cluster_name"])
    out["left"] = provider.non_terminated_nodes({})


def main():
    command, config_file, out_file = sys.argv[1:4]
    guard_network()
    out = {"command": command}
    code = 0
    try:
        {"launch": launch, "down": down}[command](config_file, out)
    except BaseException as error:  # cli_logger.abort raises SystemExit-like errors too
        out["error"] = f"{type(error).__name__}: {error}"
        out["traceback"] = traceback.format_exc()
        code = 1
    out["network"] = network
    with open(out_file, "w") as f:
        json.dump(out, f, indent=1, default=str)
    sys.exit(code)


if __name__ == "__main__":
    main()
