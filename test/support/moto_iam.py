"""An AWS account in moto for the IAM-enforced tests, made while moto still lets anyone in.

  python moto_iam.py ENDPOINT ACCOUNT_FILE OUT

ACCOUNT_FILE (JSON): {"role": NAME, "trust": {...}, "policy": {...}}. Creates the role with that
trust policy and exactly that policy (inline), the nodes' instance profile `ray-autoscaler-v1`
with its role (Ray's default, which the README says an administrator creates), then assumes the
role with a web identity as the action does. OUT: the role ARN and the assumed-role credentials.
The caller then turns IAM enforcement on (moto's /moto-api/reset-auth).
"""

import json
import sys

from moto_admin import admin_clients, read_json

EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def main():
    endpoint, account_file, out_file = sys.argv[1:4]
    account = read_json(account_file)
    iam, sts = admin_clients(endpoint, "iam", "sts")

    role = iam.create_role(
        RoleName=account["role"], AssumeRolePolicyDocument=json.dumps(account["trust"])
    )["Role"]
    iam.put_role_policy(
        RoleName=account["role"],
        PolicyName="mcs-pipeline",
        PolicyDocument=json.dumps(account["policy"]),
    )
    iam.create_role(RoleName="ray-autoscaler-v1", AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    iam.create_instance_profile(InstanceProfileName="ray-autoscaler-v1")
    iam.add_role_to_instance_profile(
        InstanceProfileName="ray-autoscaler-v1", RoleName="ray-autoscaler-v1"
    )
    credentials = sts.assume_role_with_web_identity(
        RoleArn=role["Arn"],
        RoleSessionName="mcs-test",
        WebIdentityToken="github-oidc-token-stand-in",
        DurationSeconds=3600,
    )["Credentials"]
    attached = iam.get_role_policy(RoleName=account["role"], PolicyName="mcs-pipeline")
    with open(out_file, "w") as f:
        json.dump(
            {
                "roleArn": role["Arn"],
                "accessKeyId": credentials["AccessKeyId"],
                "secretAccessKey": credentials["SecretAccessKey"],
                "sessionToken": credentials["SessionToken"],
                "policies": iam.list_role_policies(RoleName=account["role"])["PolicyNames"],
                "attachedPolicies": iam.list_attached_role_policies(RoleName=account["role"])[
                    "AttachedPolicies"
                ],
                "policy": attached["PolicyDocument"],
            },
            f,
        )


if __name__ == "__main__":
    main()
