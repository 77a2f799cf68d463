"""TLS material of the tests' own, made with the ``openssl`` CLI: a CA, a server certificate
for ``127.0.0.1``, a client certificate, an expired client certificate and an unrelated CA.

``make_tls(directory)`` writes every file under ``directory`` and returns their paths;
``cert_dir`` lays out a ``DOCKER_CERT_PATH`` directory (``ca.pem``, ``cert.pem``, ``key.pem``,
those given) as the docker CLI expects it. Keys are EC P-256 (quick to make). The expired
certificate is signed with ``openssl ca -startdate/-enddate`` (OpenSSL 3.0's ``x509 -req``
cannot date a certificate in the past), valid for one day in 2020.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CA_EXT = [
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-addext", "subjectKeyIdentifier=hash",
]  # fmt: skip
_LEAF = (
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
)
_SERVER_EXT = _LEAF + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
_CLIENT_EXT = _LEAF + "extendedKeyUsage=clientAuth\n"

# ``openssl ca`` wants a config naming its database; the expired client certificate only.
_CA_CONFIG = """\
[ ca ]
default_ca = expiring

[ expiring ]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = client

[ anything ]
commonName = supplied

[ client ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Paths of the material ``make_tls`` wrote (all PEM)."""

    root: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    wrong_ca: Path
    wrong_ca_key: Path
    cert_path: Path  # a DOCKER_CERT_PATH: ca.pem, cert.pem, key.pem (the good client)

    def dockerd_args(self) -> list[str]:
        """dockerd's ``--tlsverify`` arguments (clients must show a certificate of ``ca``)."""
        return ["--tlsverify", "--tlscacert", str(self.ca), "--tlscert", str(self.server_cert),
                "--tlskey", str(self.server_key)]  # fmt: skip


def openssl(*args: str, cwd: Path | None = None) -> str:
    """Run the openssl CLI; its stderr in the error if it fails."""
    done = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, check=False, timeout=60, cwd=cwd
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
            str(path))  # fmt: skip
    path.chmod(0o600)
    return path


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key = _key(directory / f"{name}-key.pem")
    cert = directory / f"{name}.pem"
    openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", "7",
            "-subj", f"/CN=aiotracker test {name}", *_CA_EXT)  # fmt: skip
    return cert, key


def _csr(directory: Path, name: str, subject: str) -> tuple[Path, Path]:
    key = _key(directory / f"{name}-key.pem")
    csr = directory / f"{name}.csr"
    openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
    return csr, key


def _sign(directory: Path, name: str, subject: str, ext: str, ca: Path, ca_key: Path
          ) -> tuple[Path, Path]:  # fmt: skip
    csr, key = _csr(directory, name, subject)
    extfile = directory / f"{name}.ext"
    extfile.write_text(ext)
    cert = directory / f"{name}.pem"
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "7", "-sha256", "-extfile", str(extfile),
            "-out", str(cert))  # fmt: skip
    return cert, key


def _sign_expired(directory: Path, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    csr, key = _csr(directory, "expired", "/CN=aiotracker expired client")
    db = directory / "ca-db"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    config = db / "openssl.cnf"
    config.write_text(_CA_CONFIG.format(dir=db))
    cert = directory / "expired.pem"
    openssl("ca", "-batch", "-notext", "-config", str(config), "-cert", str(ca),
            "-keyfile", str(ca_key), "-in", str(csr), "-out", str(cert),
            "-startdate", "20200101000000Z", "-enddate", "20200102000000Z")  # fmt: skip
    return cert, key


def cert_dir(directory: Path, ca: Path | None, cert: Path | None = None,
             key: Path | None = None) -> Path:  # fmt: skip
    """A ``DOCKER_CERT_PATH`` directory holding copies of those given as ca/cert/key.pem."""
    directory.mkdir(parents=True)
    for source, name in ((ca, "ca.pem"), (cert, "cert.pem"), (key, "key.pem")):
        if source is not None:
            shutil.copyfile(source, directory / name)
    return directory


def make_tls(directory: Path) -> TLSFiles:
    """Write a CA, server, client, expired-client and wrong-CA material under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca(directory, "ca")
    wrong_ca, wrong_ca_key = _ca(directory, "wrong-ca")
    server, server_key = _sign(directory, "server", "/CN=127.0.0.1", _SERVER_EXT, ca, ca_key)
    client, client_key = _sign(directory, "client", "/CN=aiotracker client", _CLIENT_EXT, ca,
                               ca_key)  # fmt: skip
    expired, expired_key = _sign_expired(directory, ca, ca_key)
    return TLSFiles(
        root=directory, ca=ca, ca_key=ca_key, server_cert=server, server_key=server_key,
        client_cert=client, client_key=client_key, expired_cert=expired,
        expired_key=expired_key, wrong_ca=wrong_ca, wrong_ca_key=wrong_ca_key,
        cert_path=cert_dir(directory / "docker", ca, client, client_key),
    )  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
