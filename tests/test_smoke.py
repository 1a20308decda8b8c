from conftest import make_tree


def test_add_status_checkout_round_trip(repo_dir, cli):
    files = make_tree(repo_dir / "data", 30)
    assert cli("add", "data").code == 0
    assert (repo_dir / "data.dv").exists()
    import shutil

    shutil.rmtree(repo_dir / "data")
    r = cli("status")
    assert "missing:" in r.out and "data" in r.out
    assert cli("checkout").code == 0
    for rel, data in files.items():
        assert (repo_dir / "data" / rel).read_bytes() == data
