"""The request and object-byte counts of tests/s3servers.py's servers, which the benchmark
reports (benchmarks/dvbench/s3.py): both servers count the same object bytes."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from s3servers import MotoServer, new_bucket_name, s3_client


@pytest.fixture
def counting_moto():
    server = MotoServer(count=True).start()
    yield server
    server.stop()


@pytest.mark.parametrize("which", ["moto", "seaweedfs"])
def test_requests_and_object_bytes_are_counted_per_bucket(which, request, aws_env):
    server = request.getfixturevalue("counting_moto" if which == "moto" else "seaweed_server")
    client = s3_client(server.endpoint)
    bucket = new_bucket_name()
    client.create_bucket(Bucket=bucket)
    requests0 = sum(server.request_counts().get(bucket, {}).values())

    client.put_object(Bucket=bucket, Key="d/x", Body=b"a" * 12_345)
    client.list_objects_v2(Bucket=bucket, Prefix="d/")
    client.head_object(Bucket=bucket, Key="d/x")
    assert client.get_object(Bucket=bucket, Key="d/x")["Body"].read() == b"a" * 12_345
    assert len(client.get_object(Bucket=bucket, Key="d/x", Range="bytes=0-99")["Body"].read()) == 100
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key="d/missing")

    # Object payloads only: no listing, header or error body.
    assert server.traffic_bytes()[bucket] == {"received": 12_345, "sent": 12_445}
    assert sum(server.request_counts()[bucket].values()) - requests0 == 6


def test_a_moto_server_that_does_not_count_reports_nothing(s3_server):
    assert s3_server.request_counts() == {} and s3_server.traffic_bytes() == {}
