"""`rampart -t` runs every check start-up runs.

Each case writes a configuration that the schema accepts but that cannot
start (a token file that is missing, too open or too short; an access log
or status database in a directory that is not there; an address this host
cannot bind), and requires `rampart -t -c FILE` to exit 1 with the exact
"FILE:LINE:COL: message" line.  A real start (`rampart -c FILE`) must
refuse the same file with the same line: both run one check.
"""
import os
import socket
import stat
import subprocess

import pytest

from conftest import binary, free_port

TOKEN = "check-test-token-0123456789"


def layout(tmp_path, admin_extra="", log=None, status_db=None, listen=None, admin_listen=None,
           status_listen=None, token=TOKEN, token_mode=0o600):
    """Write a valid configuration plus its files; the keyword arguments
    break one thing each.  Returns (config path, token path)."""
    tf = tmp_path / "admin.token"
    if token is not None:
        tf.write_text(token + "\n")
        tf.chmod(token_mode)
    listen = listen or f"127.0.0.1:{free_port()}"
    admin_listen = admin_listen or f"127.0.0.1:{free_port()}"
    status_listen = status_listen or f"127.0.0.1:{free_port()}"
    log = log or str(tmp_path / "access.log")
    status_db = status_db or str(tmp_path / "status.db")
    text = (
        f"listen: {listen}\n"                            # line 1
        "upstreams:\n"                                   # line 2
        "  chat:\n"                                      # line 3
        f"    servers: [127.0.0.1:{free_port()}]\n"      # line 4
        "admin:\n"                                       # line 5
        f"  listen: {admin_listen}\n"                    # line 6
        f"  token_file: {tf}\n"                          # line 7
        f"{admin_extra}"
        "log:\n"                                         # line 8
        f"  access: {log}\n"                             # line 9
        "status:\n"                                      # line 10
        f"  listen: {status_listen}\n"                   # line 11
        f"  db: {status_db}\n"                           # line 12
    )
    conf = tmp_path / "rampart.yaml"
    conf.write_text(text)
    return str(conf), str(tf)


def check(conf, test_only=True):
    args = [binary("rampart")] + (["-t"] if test_only else []) + ["-c", conf]
    p = subprocess.run(args, capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def errors_of(stderr):
    return [line for line in stderr.splitlines() if line]


def test_good_config_passes(tmp_path):
    conf, _ = layout(tmp_path)
    rc, out, err = check(conf)
    assert (rc, err) == (0, "")
    assert out == f"{conf}: configuration ok\n"
    # -t leaves no trace: neither the log nor the database is created
    assert not (tmp_path / "access.log").exists()
    assert not (tmp_path / "status.db").exists()


def test_missing_token_file(tmp_path):
    conf, tf = layout(tmp_path, token=None)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [f'{conf}:7:3: cannot read token file "{tf}": No such file or directory']


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_token_file_open_to_group_or_others(tmp_path, mode):
    conf, tf = layout(tmp_path, token_mode=mode)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:7:3: token file "{tf}" has mode {mode:04o}: group and others must have no access (chmod 600 it)']


def test_token_file_owner_only_modes_pass(tmp_path):
    for mode in (0o600, 0o400):
        conf, _ = layout(tmp_path, token_mode=mode)
        assert check(conf)[0] == 0, oct(mode)


@pytest.mark.parametrize("token,n", [("short-token", 11), ("a" * 15, 15)])
def test_token_too_short(tmp_path, token, n):
    conf, tf = layout(tmp_path, token=token)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:7:3: token file "{tf}": the token is {n} characters, at least 16 are required']


def test_token_of_exactly_16_characters_passes(tmp_path):
    conf, _ = layout(tmp_path, token="b" * 16)
    assert check(conf)[0] == 0


def test_token_file_empty_or_with_spaces(tmp_path):
    conf, tf = layout(tmp_path, token="   ")
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [f'{conf}:7:3: token file "{tf}": empty']
    conf, tf = layout(tmp_path, token="two words of a long token")
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:7:3: token file "{tf}": the token contains whitespace or non-printable bytes']


def test_token_file_is_a_directory(tmp_path):
    conf, tf = layout(tmp_path, token=None)
    os.mkdir(tf)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [f'{conf}:7:3: token file "{tf}" is not a regular file']


def test_access_log_in_missing_directory(tmp_path):
    log = str(tmp_path / "no-such-dir" / "access.log")
    conf, _ = layout(tmp_path, log=log)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:9:3: access log "{log}": directory "{tmp_path}/no-such-dir" does not exist']


def test_access_log_is_a_directory(tmp_path):
    conf, _ = layout(tmp_path, log=str(tmp_path))
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [f'{conf}:9:3: access log "{tmp_path}" is not a regular file']


def test_access_log_under_a_file(tmp_path):
    (tmp_path / "plain").write_text("")
    log = str(tmp_path / "plain" / "access.log")
    conf, _ = layout(tmp_path, log=log)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [f'{conf}:9:3: access log "{log}": Not a directory']


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_access_log_directory_not_writable(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    log = str(d / "access.log")
    conf, _ = layout(tmp_path, log=log)
    try:
        rc, _, err = check(conf)
    finally:
        d.chmod(0o700)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:9:3: access log "{log}": directory "{d}" is not writable: Permission denied']


def test_status_db_in_missing_directory(tmp_path):
    db = str(tmp_path / "gone" / "status.db")
    conf, _ = layout(tmp_path, status_db=db)
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:12:3: status database "{db}": directory "{tmp_path}/gone" does not exist']


def test_address_this_host_cannot_bind(tmp_path):
    # 192.0.2.0/24 is TEST-NET-1: never a local address
    port = free_port()
    conf, _ = layout(tmp_path, listen=f"192.0.2.1:{port}", admin_listen=f"192.0.2.1:{port + 1}",
                     status_listen=f"192.0.2.1:{port + 2}")
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:1:9: cannot listen on proxy address "192.0.2.1:{port}": Cannot assign requested address',
        f'{conf}:6:11: cannot listen on admin address "192.0.2.1:{port + 1}": Cannot assign requested address',
        f'{conf}:11:11: cannot listen on status address "192.0.2.1:{port + 2}": Cannot assign requested address',
    ]


def test_address_in_a_list(tmp_path):
    # the error points at the list item that cannot be bound
    port = free_port()
    conf, _ = layout(tmp_path, listen=f"[127.0.0.1:{port}, 192.0.2.1:{port}]")
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:1:{10 + len(f"127.0.0.1:{port}, ")}: cannot listen on proxy address "192.0.2.1:{port}": '
        'Cannot assign requested address']


def test_port_in_use_is_left_to_start_up(tmp_path):
    # -t runs next to the gateway it replaces: a busy port is not an error
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        conf, _ = layout(tmp_path, listen=f"127.0.0.1:{s.getsockname()[1]}")
        rc, out, err = check(conf)
        assert (rc, err) == (0, "")
        # ...while a real start fails on it
        rc, _, err = check(conf, test_only=False)
        assert rc == 1
        assert "Address already in use" in err


def test_every_error_is_listed_in_file_order(tmp_path):
    # a schema mistake and two start-up mistakes, in one run
    conf, tf = layout(tmp_path, admin_extra="  tokenfile: x\n", token="short-token",
                      log=str(tmp_path / "missing" / "a.log"))
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:7:3: token file "{tf}": the token is 11 characters, at least 16 are required',
        f'{conf}:8:3: unknown key "tokenfile" (expected one of: listen, token_file)',
        f'{conf}:10:3: access log "{tmp_path}/missing/a.log": directory "{tmp_path}/missing" does not exist',
    ]


def test_start_refuses_what_check_refuses(tmp_path):
    conf, tf = layout(tmp_path, token_mode=0o644)
    rc, _, err = check(conf, test_only=False)
    assert rc == 1
    assert errors_of(err) == [
        f'{conf}:7:3: token file "{tf}" has mode 0644: group and others must have no access (chmod 600 it)']


def test_status_db_that_is_not_sqlite(tmp_path):
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n")
    conf, _ = layout(tmp_path, status_db=str(db))
    rc, _, err = check(conf)
    assert rc == 1
    assert errors_of(err) == [f'{conf}:12:3: status database "{db}" is not an SQLite database']
    assert db.read_text() == "not a database\n"


def test_existing_status_db_passes(tmp_path):
    import sqlite3
    db = tmp_path / "status.db"
    sqlite3.connect(db).execute("create table t (x)").connection.close()
    conf, _ = layout(tmp_path, status_db=str(db))
    assert check(conf)[:3:2] == (0, "")
