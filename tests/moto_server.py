"""Old name of the S3 test helpers, kept so that test modules written against it still
import: everything now lives in ``s3servers`` (moto and SeaweedFS); import from there."""

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
