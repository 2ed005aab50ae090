"""Throwaway certificates for tests, made with the `openssl` command: a CA and a server
certificate it signed for this machine's loopback (IP 127.0.0.1 and DNS localhost), valid for
a day. A test that needs them skips, saying why, only when `openssl` is not installed (CI
installs it: .ci/run)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NO_OPENSSL = "the `openssl` command is not installed (apt-get install openssl)"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"


def make_ca(directory: Path, name: str = "ca") -> Path:
    """A self-signed CA: DIR/NAME.pem and DIR/NAME.key."""
    if shutil.which("openssl") is None:
        pytest.skip(NO_OPENSSL)
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "1", "-subj", f"/CN=minijet test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return directory / f"{name}.pem"


def make_server_cert(directory: Path, ca: Path, name: str = "server") -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by `ca` (made by make_ca in
    the same directory): (DIR/NAME.pem, DIR/NAME.key)."""
    (directory / f"{name}.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n")
    _openssl("req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca.name,
             "-CAkey", ca.with_suffix(".key").name, "-CAcreateserial", "-days", "1",
             "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"
