"""The pure parts of jobs' DFS credentials: the scope check, the nameserver's credential
table (journal records, replay, image, expiry) and block access tokens."""
from types import SimpleNamespace as Req

import pytest

from minijet.dfs import blocktokens
from minijet.dfs.credentials import CredentialTable, headers
from minijet.dfs.scope import Scope, refusal
from minijet.errors import InvalidArgument, Unauthenticated
from minijet.proto import dfs_pb2 as pb

SCOPE = Scope.of(["/in", "/jobs/job_1/"], ["/out"])


@pytest.mark.parametrize("method,request_", [
    ("GetFileInfo", Req(path="/in")),
    ("GetBlockLocations", Req(path="/in/part-00000")),
    ("List", Req(path="/jobs/job_1")),
    ("List", Req(path="/out/_temporary")),       # a write path is readable too
    ("Fsck", Req(path="/in")),
    ("Create", Req(path="/out/_temporary/a1/part-00000")),
    ("Mkdirs", Req(path="//out///x/")),           # normalised first
    ("AddBlock", Req(path="/out/x")),
    ("Complete", Req(path="/out/x")),
    ("AbandonBlock", Req(path="/out/x")),
    ("Delete", Req(path="/out")),
    ("Rename", Req(src="/out/_temporary/a1/part-00000", dst="/out/part-00000")),
])
def test_calls_within_the_scope_are_allowed(method, request_):
    assert refusal(SCOPE, method, request_) is None


@pytest.mark.parametrize("method,request_,why", [
    ("GetFileInfo", Req(path="/secret/file"), "may not read /secret/file"),
    ("GetBlockLocations", Req(path="/input"), "may not read /input"),   # not a prefix match
    ("List", Req(path="/"), "may not read /"),
    ("Fsck", Req(path=""), "may not read /"),                 # fsck's default: the root
    ("Create", Req(path="/in/y"), "may not change /in/y"),
    ("Delete", Req(path="/jobs/job_1"), "may not change /jobs/job_1"),
    ("Rename", Req(src="/out/x", dst="/elsewhere"), "may not change /elsewhere"),
    ("Rename", Req(src="/in/x", dst="/out/x"), "may not change /in/x"),
    ("GetFileInfo", Req(path="/out/../secret"), "'..' components are not allowed"),
    ("Create", Req(path="out/x"), "must be absolute"),
    ("RegisterDataServer", Req(), "RegisterDataServer is not open to a job's credential"),
    ("BlockReport", Req(), "not open"),
    ("SafeMode", Req(), "not open"),
    ("ReportBadBlock", Req(), "not open"),
    ("AddJobCredential", Req(), "not open"),
    ("RemoveJobCredential", Req(), "not open"),
])
def test_calls_outside_the_scope_are_refused_saying_why(method, request_, why):
    assert why in refusal(SCOPE, method, request_)


def batch(*ops):
    return pb.BatchRequest(ops=ops)


def test_a_batch_is_allowed_only_when_every_operation_is():
    inside = [pb.NamespaceOp(mkdirs=pb.MkdirsRequest(path="/out/d")),
              pb.NamespaceOp(create_empty=pb.EmptyFileRequest(path="/out/d/_SUCCESS"))]
    assert refusal(SCOPE, "Batch", batch(*inside)) is None
    outside = pb.NamespaceOp(create_empty=pb.EmptyFileRequest(path="/in/x"))
    assert "Create: the job may not change /in/x" in refusal(SCOPE, "Batch",
                                                              batch(*inside, outside))
    assert "unknown operation" in refusal(SCOPE, "Batch", batch(pb.NamespaceOp()))


def test_a_scope_is_normalised_and_refuses_a_bad_path():
    assert SCOPE == Scope(("/in", "/jobs/job_1"), ("/out",))
    with pytest.raises(InvalidArgument):
        Scope.of(["/a/../b"], [])


def test_a_credential_is_added_authenticated_removed_and_replayed():
    table = CredentialTable()
    records = [table.add("job_1", "s3", "alice", SCOPE, expires=100.0)]
    assert table.add("job_1", "s3", "alice", SCOPE, expires=200.0) is None   # a retried call
    c = table.authenticate("job_1", "s3", now=50.0)
    assert (c.owner, c.scope) == ("alice", SCOPE)
    with pytest.raises(Unauthenticated, match="no valid DFS credential for job job_1"):
        table.authenticate("job_1", "wrong", now=50.0)
    with pytest.raises(Unauthenticated, match="job_2"):
        table.authenticate("job_2", "s3", now=50.0)

    replayed = CredentialTable()
    for r in records:
        replayed.apply(r)
    assert replayed.authenticate("job_1", "s3", now=50.0) == c
    assert CredentialTable.from_image(table.to_image()).authenticate("job_1", "s3", 50.0) == c

    records.append(table.remove("job_1"))
    assert table.remove("job_1") is None        # idempotent
    with pytest.raises(Unauthenticated):
        table.authenticate("job_1", "s3", now=50.0)
    replayed.apply(records[-1])
    assert len(replayed) == 0


def test_an_expired_credential_is_refused_then_dropped():
    table = CredentialTable()
    table.add("job_1", "s", "alice", SCOPE, expires=100.0)
    table.add("job_2", "s", "bob", SCOPE, expires=300.0)
    with pytest.raises(Unauthenticated, match="expired"):
        table.authenticate("job_1", "s", now=100.0)
    assert table.expire(now=200.0) == [{"op": "remove_credential", "job_id": "job_1"}]
    assert len(table) == 1 and table.expire(now=200.0) == []


def test_a_credential_token_is_job_id_and_secret():
    assert headers("job_1:abc") == [("x-minijet-job", "job_1"),
                                    ("x-minijet-job-secret", "abc")]
    for bad in ("job_1", ":abc", "job_1:"):
        with pytest.raises(InvalidArgument):
            headers(bad)
    with pytest.raises(InvalidArgument):
        CredentialTable().add("job:1", "s", "alice", SCOPE, 1.0)


def test_a_block_tokens_key_is_bound_to_its_block_mode_expiry_and_cluster():
    token = blocktokens.make("cluster", 42, blocktokens.READ, expires=1000.9)
    expires, key = blocktokens.parse(token)
    assert (expires, key) == (1000, blocktokens.key("cluster", 42, blocktokens.READ, 1000))
    for other in (blocktokens.key("cluster", 43, blocktokens.READ, 1000),
                  blocktokens.key("cluster", 42, blocktokens.WRITE, 1000),
                  blocktokens.key("cluster", 42, blocktokens.READ, 2000),
                  blocktokens.key("other", 42, blocktokens.READ, 1000)):
        assert other != key
    for bad in ("", "junk", "x:y", "1000:"):
        with pytest.raises(ValueError):
            blocktokens.parse(bad)
