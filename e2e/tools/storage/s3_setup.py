"""Prepares a fresh moto server for tests/storage.rs, then turns its authentication on.

Creates the bucket `probe`, two IAM users allowed every S3 action (`allowed`, and
`rotated` to rotate to) and one allowed none (`denied`), each with an access key; then POSTs /moto-api/reset-auth so that from here on every
request must be signed by one of those keys and allowed by its policy. Prints the keys
as JSON: {"allowed": {"id", "secret"}, "denied": {"id", "secret"}}.

Usage: setup.py ENDPOINT [CA_FILE]
"""
import json
import ssl
import sys
import urllib.request

import boto3

endpoint = sys.argv[1]
ca_file = sys.argv[2] if len(sys.argv) > 2 else None
session = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
if ca_file:
    session["verify"] = ca_file
s3 = boto3.client("s3", **session)
iam = boto3.client("iam", **session)

s3.create_bucket(Bucket="probe")
keys = {}
for user, actions in (("allowed", ["s3:*"]), ("rotated", ["s3:*"]), ("denied", [])):
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    if actions:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    keys[user] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

context = ssl.create_default_context(cafile=ca_file) if ca_file else None
request = urllib.request.Request(
    endpoint + "/moto-api/reset-auth",
    data=b"0",
    method="POST",
    headers={"Content-Type": "text/plain"},
)
urllib.request.urlopen(request, context=context).read()
print(json.dumps(keys))
