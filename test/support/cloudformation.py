"""Deploys cloudformation/mcs-pipeline-setup.yaml to moto's CloudFormation; reads back what it made.

  python cloudformation.py ENDPOINT TEMPLATE PARAMETERS OUT

PARAMETERS (JSON): the stack's parameters (others take their defaults). With CreateOidcProvider=false, GitHub's OIDC provider
is first created through IAM, as in an account that already has it. Waits for the stack to settle,
then writes OUT (JSON): the stack's status, outputs and resources; every IAM role (trust policy,
inline and attached policies); every instance profile; whether the results bucket exists and its
encryption as S3 reports it; the OIDC provider's ARN.
"""

import ast
import json
import sys
import time

from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml
from moto_admin import admin_clients, read_json

GITHUB = "https://token.actions.githubusercontent.com"


def policy_document(document):
    """A policy document as IAM returns it. moto's CloudFormation stores an inline policy given as
    an object as Python's repr of it (Role.put_policy in moto/iam/models.py); read it back."""
    if not isinstance(document, str):
        return document
    try:
        return json.loads(document)
    except json.JSONDecodeError:
        return ast.literal_eval(document)


def s3_setting(call, key, bucket):
    try:
        return call(Bucket=bucket)[key]
    except ClientError:
        return None  # S3 has none (NoSuch... errors)


def main():
    endpoint, template, parameters_file, out_file = sys.argv[1:5]
    parameters = read_json(parameters_file)
    cfn, iam, s3 = admin_clients(endpoint, "cloudformation", "iam", "s3")

    provider = None
    if parameters.get("CreateOidcProvider") == "false":
        provider = iam.create_open_id_connect_provider(
            Url=GITHUB, ClientIDList=["sts.amazonaws.com"]
        )["OpenIDConnectProviderArn"]
    with open(template) as f:
        body = f.read()
    # moto splits the CommaDelimitedList values it is given, not the defaults it falls back on
    # (ResourceMap.load_parameters), which it then reads as strings: pass those as given values.
    for name, parameter in cfn_yaml.load(template)["Parameters"].items():
        if parameter["Type"] == "CommaDelimitedList" and "Default" in parameter:
            parameters.setdefault(name, parameter["Default"])
    cfn.create_stack(
        StackName="mcs-pipeline",
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.time() + 60
    while True:
        stack = cfn.describe_stacks(StackName="mcs-pipeline")["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.2)

    roles = {}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        roles[name] = {
            "arn": role["Arn"],
            "trust": policy_document(role["AssumeRolePolicyDocument"]),
            "policies": {
                policy: policy_document(
                    iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
                )
                for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
            },
            "attached": iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"],
        }
    profiles = {
        p["InstanceProfileName"]: {"arn": p["Arn"], "roles": [r["RoleName"] for r in p["Roles"]]}
        for p in iam.list_instance_profiles()["InstanceProfiles"]
    }
    bucket = parameters["ResultsBucketName"]
    out = {
        "status": stack["StackStatus"],
        "reason": stack.get("StackStatusReason"),
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        "resources": {
            r["LogicalResourceId"]: {
                "type": r["ResourceType"],
                "id": r["PhysicalResourceId"],
                "status": r["ResourceStatus"],
            }
            for r in cfn.list_stack_resources(StackName="mcs-pipeline")["StackResourceSummaries"]
            # moto lists a resource its condition left out as an entry with empty fields.
            if r["LogicalResourceId"]
        },
        "roles": roles,
        "profiles": profiles,
        "oidcProvider": provider,
        # What moto's bucket applies of its properties (see moto_cfn.py for the rest).
        "bucket": {
            "exists": bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]],
            "encryption": s3_setting(
                s3.get_bucket_encryption, "ServerSideEncryptionConfiguration", bucket
            ),
        },
    }
    with open(out_file, "w") as f:
        json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
