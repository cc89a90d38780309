"""Seed an S3 server that takes fixed keys (benches/s3.sh with SERVER=s3s-fs), with boto3 only.

Reads the same JSON spec as tests/s3/seed.py on stdin ({"endpoint", "region", "buckets", "objects":
[{"bucket", "key", "file", "part_size"}]}); objects with a part_size are uploaded in multipart parts
of that size, the rest with PutObject. argv: ACCESS_KEY SECRET_KEY. Prints {"access_key",
"secret_key", "listed": {bucket: [keys as listed back]}}.
"""
import json
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def main():
    ak, sk = sys.argv[1:3]
    spec = json.load(sys.stdin)
    s3 = boto3.client("s3", endpoint_url=spec["endpoint"], region_name=spec.get("region", "us-east-1"),
                      aws_access_key_id=ak, aws_secret_access_key=sk,
                      config=Config(s3={"addressing_style": "path"}))
    for b in spec.get("buckets", []):
        s3.create_bucket(Bucket=b)
    for o in spec.get("objects", []):
        if o.get("part_size"):
            cfg = TransferConfig(multipart_threshold=o["part_size"], multipart_chunksize=o["part_size"],
                                 max_concurrency=4)
            s3.upload_file(o["file"], o["bucket"], o["key"], Config=cfg)
        else:
            with open(o["file"], "rb") as f:
                s3.put_object(Bucket=o["bucket"], Key=o["key"], Body=f.read())
    listed = {}
    for b in spec.get("buckets", []):
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
            keys += [c["Key"] for c in page.get("Contents", [])]
        listed[b] = keys
    json.dump({"access_key": ak, "secret_key": sk, "listed": listed}, sys.stdout)


if __name__ == "__main__":
    main()
