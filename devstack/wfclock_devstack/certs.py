"""Certificates for the local control plane: a CA, a serving cert, client certs (admin, the API
server's own for kubelets), a service-account key; and client certs for a node's components."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


SERVING_NAMES = ("localhost", "127.0.0.1")


def _san(names) -> x509.SubjectAlternativeName:
    entries = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _cert(
    subject,
    issuer,
    public_key,
    signing_key,
    *,
    ca=False,
    server=False,
    client=False,
    names=SERVING_NAMES,
):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usages = []
    if server:
        usages.append(x509.ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(_san(names), critical=False)
    if client:
        usages.append(x509.ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    return builder.sign(signing_key, hashes.SHA256())


def generate(directory: Path) -> dict[str, Path]:
    """Writes ca, apiserver (serving), admin (system:masters client), kubelet-client (the API
    server's login to kubelets, for logs and exec) and service-account keys."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(
        _name("wfclock-local-ca"), _name("wfclock-local-ca"), ca_key.public_key(), ca_key, ca=True
    )
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        path = directory / name
        path.write_bytes(data)
        files[name] = path

    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    write("ca.key", _pem_key(ca_key))
    for name, subject, kind in (
        ("apiserver", _name("kube-apiserver"), {"server": True}),
        ("admin", _name("wfclock-admin", "system:masters"), {"client": True}),
        (
            "kubelet-client",
            _name("kube-apiserver-kubelet-client", "system:masters"),
            {"client": True},
        ),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(subject, ca.subject, key.public_key(), ca_key, **kind)
        write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}.key", _pem_key(key))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("sa.key", _pem_key(sa_key))
    write(
        "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return files


def issue_client(ca: dict[str, Path], directory: Path, name: str, cn: str, org: str | None = None):
    """A client certificate signed by the control plane's CA (`ca.crt`, `ca.key` of `generate`),
    written as `name.crt` and `name.key` in `directory`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(ca["ca.crt"].read_bytes())
    ca_key = serialization.load_pem_private_key(ca["ca.key"].read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(_name(cn, org), ca_cert.subject, key.public_key(), ca_key, client=True)
    crt_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    return crt_path, key_path


def serving_names(cert: Path) -> list[str]:
    """The host names and addresses a serving certificate is valid for."""
    san = (
        x509.load_pem_x509_certificate(cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    ]


def add_serving_address(ca: dict[str, Path], name: str, address: str) -> None:
    """Re-issues the serving certificate `name.crt` (of `generate`) with one more address, for
    the same key, and replaces the file in one rename: the API server reloads it from disk, and
    its key never differs from the certificate it is reading."""
    crt = ca[f"{name}.crt"]
    names = serving_names(crt)
    if address in names:
        return
    current = x509.load_pem_x509_certificate(crt.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(ca["ca.crt"].read_bytes())
    ca_key = serialization.load_pem_private_key(ca["ca.key"].read_bytes(), password=None)
    cert = _cert(
        current.subject,
        ca_cert.subject,
        current.public_key(),
        ca_key,
        server=True,
        names=[*names, address],
    )
    staged = crt.with_suffix(".crt.new")
    staged.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    staged.replace(crt)
