"""Seed a moto S3 server for tests/it/s3.rs, independently of jobdl (boto3 only).

Reads a JSON spec on stdin:
  {"endpoint": "http://127.0.0.1:PORT", "region": "us-east-1",
   "buckets": ["b"],
   "objects": [{"bucket": "b", "key": "k", "file": "/path", "part_size": null | 5242880,
                "parts": null | [5242880, 7340032, ...],      (explicit part sizes, the last takes the rest)
                "checksum": null | "CRC32" | "SHA256"}],      (a FULL_OBJECT checksum stored with it)
   "bulk": {"bucket": "b", "prefix": "many/", "count": 1003}}   (optional: small objects whose
   content is their own key, named "<prefix>k <n>+x.txt")
With signature checking on (INITIAL_NO_AUTH_ACTION_COUNT=3), the first three requests create an
IAM user, its policy and an access key (kfp-s3-api.md section 8); everything after is signed with
that key. Prints {"access_key": ..., "secret_key": ...} and, per object, the ETag moto stored and
the keys as listed back, so the test can check what moto really holds.
With argv ACCESS_KEY SECRET_KEY (a server that takes fixed keys, such as s3s-fs in benches/s3.sh),
no IAM user is made and those keys sign everything.
"""
import json
import sys

import boto3
from botocore.config import Config


def main():
    spec = json.load(sys.stdin)
    endpoint, region = spec["endpoint"], spec.get("region", "us-east-1")
    cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
    if len(sys.argv) == 3:
        key = {"AccessKeyId": sys.argv[1], "SecretAccessKey": sys.argv[2]}
    else:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=region, config=cfg,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="jobdl")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="jobdl", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="jobdl")["AccessKey"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, config=cfg,
                      aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    for b in spec.get("buckets", []):
        s3.create_bucket(Bucket=b)
    etags = {}
    for o in spec.get("objects", []):
        with open(o["file"], "rb") as f:
            data = f.read()
        part, sizes, alg = o.get("part_size"), o.get("parts"), o.get("checksum")
        if part or sizes:
            if not sizes:
                sizes = [part] * ((len(data) + part - 1) // part)
            cks = {"ChecksumAlgorithm": alg, "ChecksumType": "FULL_OBJECT"} if alg else {}
            up = s3.create_multipart_upload(Bucket=o["bucket"], Key=o["key"], **cks)
            parts, off = [], 0
            for n, size in enumerate(sizes, start=1):
                end = len(data) if n == len(sizes) else off + size
                extra = {"ChecksumAlgorithm": alg} if alg else {}
                r = s3.upload_part(Bucket=o["bucket"], Key=o["key"], UploadId=up["UploadId"],
                                   PartNumber=n, Body=data[off:end], **extra)
                p = {"ETag": r["ETag"], "PartNumber": n}
                if alg:
                    p["Checksum" + alg] = r["Checksum" + alg]
                parts.append(p)
                off = end
            done = {"ChecksumType": "FULL_OBJECT"} if alg else {}
            r = s3.complete_multipart_upload(Bucket=o["bucket"], Key=o["key"], UploadId=up["UploadId"],
                                             MultipartUpload={"Parts": parts}, **done)
        else:
            extra = {"ChecksumAlgorithm": alg} if alg else {}
            r = s3.put_object(Bucket=o["bucket"], Key=o["key"], Body=data, **extra)
        etags[o["bucket"] + "/" + o["key"]] = r["ETag"].strip('"')
    bulk = spec.get("bulk")
    if bulk:
        for n in range(bulk["count"]):
            k = "%sk %04d+x.txt" % (bulk["prefix"], n)
            s3.put_object(Bucket=bulk["bucket"], Key=k, Body=k.encode())
    listed = {}
    for b in spec.get("buckets", []):
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
            keys += [c["Key"] for c in page.get("Contents", [])]
        listed[b] = keys
    json.dump({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"],
               "etags": etags, "listed": listed}, sys.stdout)


if __name__ == "__main__":
    main()
