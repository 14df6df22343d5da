"""A development CA and a TLS certificate for the fal-hosts listener (never for production).

``python -m app.devcert <dir> <host:port>`` makes, once, in ``<dir>``: ``ca.pem`` (the CA's
certificate), ``ca.key`` (its private key, mode 0600, never leaves the directory), and
``cert.pem`` / ``key.pem`` for the listener, valid for the bind's host, 127.0.0.1 and
localhost. ``ca-bundle.pem`` is the usual public roots plus this CA, so a client that trusts
it (``SSL_CERT_FILE``) still reaches every other HTTPS host. It then prints the variables a
shell and fal's Python client need.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from pathlib import Path

CA_DAYS = 825
CERT_DAYS = 90


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _names(host: str) -> list:
    from cryptography import x509

    names: list = []
    for name in dict.fromkeys([host, "127.0.0.1", "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def make(directory: str | Path, host: str) -> dict[str, Path]:
    """Make the CA (once) and a listener certificate for ``host``; return the file paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "ca-bundle")}
    paths["ca_key"] = folder / "ca.key"
    now = datetime.datetime.now(datetime.timezone.utc)
    if paths["ca"].exists() and paths["ca_key"].exists():
        ca_key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), None)
        ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    else:
        ca_key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                "posehook development CA")])
        ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                           False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write_private(paths["ca_key"], ca_key)
        paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = _key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(paths["key"], key)
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    import certifi

    paths["ca-bundle"].write_bytes(Path(certifi.where()).read_bytes() + b"\n"
                                   + paths["ca"].read_bytes())
    return paths


def client_env(bind: str, paths: dict[str, Path]) -> dict[str, str]:
    """Return what fal's Python client needs to call the listener on ``bind``."""
    return {"FAL_QUEUE_RUN_HOST": bind, "FAL_RUN_HOST": f"{bind}/run",
            "SSL_CERT_FILE": str(paths["ca-bundle"].resolve())}


def main(argv: list[str]) -> int:
    """Make the files; print ``export`` lines for the listener, then the client's variables."""
    if len(argv) != 2:
        print("usage: python -m app.devcert <dir> <host:port>", file=sys.stderr)
        return 2
    directory, bind = argv
    host = bind.rsplit(":", 1)[0].strip("[]") or "127.0.0.1"
    paths = make(directory, host)
    print(f"export POSEHOOK_FAL_HOST_CERTFILE={paths['cert'].resolve()}")
    print(f"export POSEHOOK_FAL_HOST_KEYFILE={paths['key'].resolve()}")
    print("posehook: fal's hosts on https://" + bind + " (development CA); for fal's Python "
          "client: " + " ".join(f"{k}={v}" for k, v in client_env(bind, paths).items()),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
