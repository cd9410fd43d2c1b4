"""A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def make_certs(folder: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    folder.mkdir(parents=True, exist_ok=True)
    p = {n: folder / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key")}
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        "/CN=kubetaskqueue test CA", "-keyout", str(p["ca-key"]), "-out", str(p["ca"]))
    csr = folder / "server.csr"
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(p["server-key"]), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(p["ca"]), "-CAkey", str(p["ca-key"]),
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(p["server"]))
    return p
