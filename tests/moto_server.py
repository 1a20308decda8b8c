"""Old name of the S3 test helpers, kept so that test modules written against it still
import: everything now lives in ``s3servers`` (moto and SeaweedFS), and conftest.py
registers its fixtures for every test. New code imports only helpers from s3servers;
a module that imports a session fixture (as from here) gets its own instance of it."""

from s3servers import (  # noqa: F401
    FAKE_KEY_ID,
    FAKE_SECRET,
    HOST,
    REGION,
    AuthServer,
    Bucket,
    MotoServer,
    auth_s3_server,
    aws_env,
    new_bucket_name,
    s3_bucket,
    s3_client,
    s3_server,
)
