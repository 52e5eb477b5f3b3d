"""Backup: a compacted, consistent copy while writes go on; a daemon started
on the copy serves it; bad paths are refused."""

import threading

import grpc

from bbutil import DEVICE, SELLER, T, expect_status, link, pb, ref, stats, type_counts


def test_backup_while_writing(daemon_factory, tmp_path):
    d = daemon_factory()
    s = d.stub
    for i in range(20):
        s.Upsert(pb.UpsertRequest(links=[link(SELLER, "s%d-%d" % (i, k), DEVICE, "d%d" % i)
                                         for k in range(200)]), timeout=T())
    before = stats(s)
    stop = threading.Event()
    written = []

    def writer():
        i = 1000
        while not stop.is_set():
            s.Upsert(pb.UpsertRequest(links=[link(SELLER, "w%d" % i, DEVICE, "dw")]), timeout=T())
            written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        out = tmp_path / "copy"
        out.mkdir()
        rep = s.Backup(pb.BackupRequest(path=str(out)), timeout=T(120))
    finally:
        stop.set()
        t.join()
    assert rep.bytes > 0 and (out / "data.mdb").stat().st_size == rep.bytes
    assert written, "no write went on during the backup"
    # The copy is a consistent snapshot: everything from before, a prefix
    # of the concurrent writes, and the counters agree with the contents.
    c = daemon_factory(data_dir=out)
    cs = c.stub
    got = stats(cs)
    assert type_counts(got)[SELLER] >= type_counts(before)[SELLER]
    assert got.links >= before.links
    n_w = type_counts(got)[SELLER] - type_counts(before)[SELLER]
    assert n_w == got.links - before.links
    for i in range(20):
        assert cs.GetEntity(pb.GetEntityRequest(ref=ref(DEVICE, "d%d" % i)),
                            timeout=T()).entity.degree == 200
    for i in written[:n_w]:
        cs.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "w%d" % i)), timeout=T())
    # The copy takes writes of its own.
    cs.Upsert(pb.UpsertRequest(links=[link(SELLER, "new", DEVICE, "dnew")]), timeout=T())


def test_backup_bad_paths(daemon, tmp_path):
    s = daemon.stub
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Backup, pb.BackupRequest(path="rel/dir"),
                  timeout=T(), fields=["path", "absolute"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Backup,
                  pb.BackupRequest(path=str(tmp_path / "missing")), timeout=T(),
                  fields=["not an existing directory"])
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Backup, pb.BackupRequest(path=str(full)),
                  timeout=T(), fields=["not empty"])


def test_graphctl_backup(daemon, graphctl_bin, tmp_path):
    import subprocess
    out = tmp_path / "b"
    out.mkdir()
    r = subprocess.run([graphctl_bin, "--addr", daemon.addr, "backup", str(out)],
                       capture_output=True, text=True, timeout=T(60))
    assert r.returncode == 0 and "backup written to" in r.stdout, r.stderr
    assert (out / "data.mdb").exists()
    r = subprocess.run([graphctl_bin, "--addr", daemon.addr, "backup", str(out)],
                       capture_output=True, text=True, timeout=T(60))
    assert r.returncode == 1 and "not empty" in r.stderr
