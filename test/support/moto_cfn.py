"""moto's server, recording what its CloudFormation hands each resource it creates.

  MOTO_CFN_RECORD=FILE python moto_cfn.py [moto.server's arguments]

moto resolves a resource's properties (Ref, Fn::If, Fn::Sub, ...) and passes them to the
resource's model, which applies what it implements and drops the rest: its S3 bucket applies
BucketEncryption and Tags only (moto/s3/models.py, FakeBucket.create_from_cloudformation_json),
not PublicAccessBlockConfiguration, LifecycleConfiguration or OwnershipControls. So that the tests
can check those too, this appends one JSON line per resource to FILE: its logical id, type and
properties as resolved. moto keeps `AWS::NoValue` in a list as null (CloudFormation drops it).
"""

import json
import os

from moto.cloudformation import parsing
from moto.server import main


def record(path):
    resolve = parsing.parse_resource_and_generate_name

    def recording(logical_id, resource_json, resources_map):
        parsed = resolve(logical_id, resource_json, resources_map)
        if parsed:
            _, resolved, _ = parsed
            line = {
                "logicalId": logical_id,
                "type": resolved.get("Type"),
                "properties": resolved.get("Properties", {}),
            }
            with open(path, "a") as f:
                f.write(json.dumps(line, default=str) + "\n")
        return parsed

    parsing.parse_resource_and_generate_name = recording


if __name__ == "__main__":
    record(os.environ["MOTO_CFN_RECORD"])
    main()
