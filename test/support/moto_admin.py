"""What the set-up scripts run against moto share: its admin's clients, and their JSON input."""
import json

import boto3


def admin_clients(endpoint, *services):
    """Clients of `services` on moto at `endpoint`, as the account's admin (moto takes any key)."""
    session = boto3.Session(
        aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1"
    )
    return [session.client(service, endpoint_url=endpoint) for service in services]


def read_json(path):
    with open(path) as f:
        return json.load(f)
