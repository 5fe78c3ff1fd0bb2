"""Storage through real s3fs against the loopback S3 endpoint, and on local disk."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import pytest

from pipelines.data.storage import Storage, StorageConfig, is_temp, join


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_bucket") + "/prefix"


def test_write_read_list_rename(root):
    st = Storage()
    st.write_bytes(join(root, "a/one.bin"), b"1" * 10)
    st.write_bytes(join(root, "a/two.bin"), b"22")
    assert st.read_bytes(join(root, "a/one.bin")) == b"1" * 10
    assert [u.rsplit("/", 1)[-1] for u in st.ls(join(root, "a"))] == ["one.bin", "two.bin"]
    assert st.size(join(root, "a/two.bin")) == 2
    st.rename(join(root, "a/two.bin"), join(root, "b/two.bin"))
    assert not st.exists(join(root, "a/two.bin"))
    assert st.read_bytes(join(root, "b/two.bin")) == b"22"
    assert [u.rsplit("/", 1)[-1] for u in st.glob(join(root, "*/*.bin"))] == ["one.bin", "two.bin"]
    assert len(st.find(root)) == 2
    st.rm(join(root, "b"), recursive=True)
    assert st.find(join(root, "b")) == []


def test_atomic_write_leaves_nothing_on_failure(root):
    st = Storage()
    target = join(root, "x/data.bin")
    with pytest.raises(RuntimeError), st.atomic_write(target) as f:
        f.write(b"partial")
        raise RuntimeError("killed mid-write")
    assert not st.exists(target)
    assert [u for u in st.find(root) if is_temp(u)] == []


def test_put_get_local_copy(root, tmp_path):
    st = Storage()
    src = tmp_path / "src.txt"
    src.write_text("hello")
    st.put(src, join(root, "up/src.txt"))
    with st.local_copy(join(root, "up/src.txt")) as local:
        assert local.read_text() == "hello"
    st.get(join(root, "up/src.txt"), tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "hello"


def _read_in_child(st: Storage, uri: str, q) -> None:
    q.put(st.read_bytes(uri))


def test_storage_is_usable_after_fork_and_pickle(s3_bucket):
    """A Storage made (and used) before a fork must work in the child: s3fs is rebuilt per pid."""
    st = Storage()
    uri = join(s3_bucket, "fork.bin")
    st.write_bytes(uri, b"forked")
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=_read_in_child, args=(st, uri, q))
    p.start()
    p.join(60)
    assert q.get(timeout=5) == b"forked"
    assert pickle.loads(pickle.dumps(st)).read_bytes(uri) == b"forked"


def test_credentials_never_in_repr():
    cfg = StorageConfig(s3_endpoint_url="http://127.0.0.1:1", s3_key="AKIASECRET", s3_secret="topsecret")
    text = repr(cfg) + repr(Storage(cfg)) + str(cfg.public_dict())
    assert "AKIASECRET" not in text and "topsecret" not in text


# -- what goes wrong with the store: one StorageError (a UserError) each -------------------------
@pytest.fixture
def no_credentials(monkeypatch, s3_endpoint):
    """The loopback endpoint, with no credentials anywhere botocore looks."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_endpoint


@pytest.fixture(scope="module")
def auth_endpoint(tmp_path_factory):
    """A second loopback moto server that checks credentials (unknown keys get 403)."""
    import os
    import sys
    from pathlib import Path

    from pipelines.train.engines import free_port
    from tests.fixtures.servers import start_http_server

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_http_server([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                             url + "/moto-api/", tmp_path_factory.mktemp("moto-auth") / "moto.log",
                             env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, timeout_s=30)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_no_credentials_is_one_storage_error(no_credentials):
    from pipelines.data.storage import StorageError

    with pytest.raises(StorageError, match="no S3 credentials for s3://data/x.*AWS_ACCESS_KEY_ID"):
        Storage().ls("s3://data/x")


def test_missing_bucket_is_one_storage_error(s3_endpoint):
    from pipelines.data.storage import StorageError

    st = Storage()
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        st.write_bytes("s3://no-such-bucket/ds/dataset.json", b"{}")
    with pytest.raises(StorageError, match="does not exist"):
        st.ls("s3://no-such-bucket/ds")


def test_missing_object_stays_file_not_found(s3_bucket):
    with pytest.raises(FileNotFoundError):
        Storage().read_bytes(join(s3_bucket, "nothing-here.json"))


def test_unreachable_endpoint_is_one_storage_error():
    from pipelines.data.storage import StorageError
    from pipelines.train.engines import free_port

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    st = Storage(StorageConfig(s3_endpoint_url=closed, s3_key="k", s3_secret="s"))
    with pytest.raises(StorageError, match=f"cannot reach the S3 endpoint {closed}"):
        st.ls("s3://data/x")


def test_access_denied_is_one_storage_error(auth_endpoint):
    from pipelines.data.storage import StorageError

    st = Storage(StorageConfig(s3_endpoint_url=auth_endpoint, s3_key="AKIAUNKNOWN", s3_secret="wrong"))
    with pytest.raises(StorageError, match="access denied to s3://data/x") as info:
        st.ls("s3://data/x")
    assert "wrong" not in str(info.value)
