"""EC2 vCPU quotas for moto's Service Quotas, which knows only the `vpc` service code (moto 5.2:
GetServiceQuota of an EC2 quota answers NoSuchResourceException, GetAWSDefaultServiceQuota is not
implemented). A moto server started with this directory on PYTHONPATH answers GetServiceQuota for
the EC2 quota codes in the JSON file MCS_MOTO_EC2_QUOTAS names ({"L-1216C47A": 32, ...}), read at
every request so a test can change them; every other request is moto's own.
"""

import json
import os


def _seed_ec2_quotas(path):
    from moto.servicequotas import models

    original = models.ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code, quota_code):
        if service_code == "ec2":
            with open(path, encoding="utf-8") as f:
                quotas = json.load(f)
            if quota_code in quotas:
                return {
                    "ServiceCode": "ec2",
                    "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                    "QuotaArn": f"arn:aws:servicequotas:{self.region_name}:{self.account_id}:ec2/{quota_code}",
                    "QuotaCode": quota_code,
                    "QuotaName": quota_code,
                    "Value": float(quotas[quota_code]),
                    "Unit": "None",
                    "Adjustable": True,
                    "GlobalQuota": False,
                }
        return original(self, service_code, quota_code)

    models.ServiceQuotasBackend.get_service_quota = get_service_quota


if os.environ.get("MCS_MOTO_EC2_QUOTAS"):
    _seed_ec2_quotas(os.environ["MCS_MOTO_EC2_QUOTAS"])
