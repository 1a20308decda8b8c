"""The steps of the main run: keys, labels, which tools run them."""

from __future__ import annotations

from dataclasses import dataclass

from .config import human_size


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    tools: tuple[str, ...]  # which tools run it; "ref" marks a machine reference
    nbytes_key: str = ""  # "big" or "many": bytes processed, for a GB/s column


def step_list(cfg: dict, s3: str | None) -> list[Step]:
    """The steps; ``s3``: the S3 server's name when --s3, for the S3 steps' labels."""
    big = human_size(cfg["big_size"])
    n = f"{cfg['nfiles']:,}"
    steps = [
        Step("add_big", f"add+commit one {big} file", ("dataver", "dvc"), "big"),
        Step("hash_big", f"`dataver hash` the {big} file", ("dataver",), "big"),
        Step("hash_empty", "`dataver hash` an empty file (start-up)", ("dataver",)),
        Step("add_many", f"add+commit {n} files", ("dataver", "dvc"), "many"),
        Step("status_clean", "status, nothing changed", ("dataver", "dvc")),
        Step("readd_one", f"re-add+commit after changing 1 of {n}", ("dataver", "dvc")),
        Step("push_local", f"push {n} files to a local folder", ("dataver", "dvc"), "many"),
        Step("push_again_local", "push again, nothing changed (local folder)", ("dataver", "dvc")),
        Step("clone_pull", f"git clone + pull {n} files (local folder)", ("dataver", "dvc"), "many"),
        Step("pull_one_local", f"pull 1 file of {n} in a fresh clone (local folder)", ("dataver", "dvc")),
    ]
    if s3:
        steps += [
            Step("push_s3", f"push {n} files to S3 ({s3} on 127.0.0.1)", ("dataver", "dvc"), "many"),
            Step("push_again_s3", f"push again, nothing changed (S3, {s3})", ("dataver", "dvc")),
            Step("clone_pull_s3", f"git clone + pull {n} files from S3 ({s3})", ("dataver", "dvc"), "many"),
            Step("pull_one_s3", f"pull 1 file of {n} in a fresh clone (S3, {s3})", ("dataver", "dvc")),
        ]
    steps += [
        Step("ref_cat_big", f"`cat` the {big} file > /dev/null", ("ref",), "big"),
        Step("ref_md5sum_big", f"`md5sum` the {big} file (DVC's hash)", ("ref",), "big"),
        Step("ref_cp_big", f"`cp` the {big} file", ("ref",), "big"),
        Step("ref_cp_r_many", f"`cp -r` the {n} files", ("ref",), "many"),
    ]
    return steps
