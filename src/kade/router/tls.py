"""TLS termination: certificates from files and from the control plane, chosen by SNI.

The HTTPS listener's context holds no certificate itself: its SNI callback hands each
handshake the context of the certificate for the name the client asked for (an exact name,
else a wildcard `*.example.com`, else the default), so certificates can be replaced while the
listener runs. A certificate's names are its DNS subject alternative names (its common name
when it has none).

Private keys are only ever in memory and in files only their owner may read; nothing here logs
them.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID


class CertError(ValueError):
    """A certificate or key that cannot be used; the message names its source."""


@dataclass(frozen=True)
class Certificate:
    source: str  # a file path or `kv:<name>`, for messages
    names: frozenset[str]  # lowercase DNS names, maybe `*.example.com`
    context: ssl.SSLContext
    key_path: str = ""  # for a file certificate: its key's file (other workers load it too)


def _names(cert_pem: bytes, source: str) -> frozenset[str]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise CertError(f"{source}: not a PEM certificate ({e})") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return frozenset(n.lower().rstrip(".") for n in names)


def _context(cert_path: str, key_path: str, source: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        raise CertError(f"{source}: the certificate and key cannot be used: {reason}") from None
    return ctx


def load_files(cert_path: Path, key_path: Path) -> Certificate:
    try:
        cert_pem = cert_path.read_bytes()
    except OSError as e:
        raise CertError(f"{cert_path}: cannot be read: {e.strerror}") from None
    names = _names(cert_pem, str(cert_path))
    return Certificate(str(cert_path), names,
                       _context(str(cert_path), str(key_path), str(cert_path)), str(key_path))


def load_pem(cert_pem: str, key_pem: str, source: str) -> Certificate:
    """A certificate given as PEM text (from the control plane). OpenSSL loads only files:
    both go through a private temporary directory (0700), removed at once."""
    names = _names(cert_pem.encode(), source)
    with tempfile.TemporaryDirectory(prefix="kade-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, text in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        return Certificate(source, names, _context(cert_path, key_path, source))


def load_dir(directory: Path) -> list[Certificate]:
    """Every `NAME.crt` with its `NAME.key` in `directory`, by name."""
    if not directory.is_dir():
        raise CertError(f"{directory}: not a directory")
    try:
        crts = sorted(directory.glob("*.crt"))
    except OSError as e:
        raise CertError(f"{directory}: cannot be read: {e.strerror}") from None
    out = []
    for crt in crts:
        key = crt.with_suffix(".key")
        if not key.exists():
            raise CertError(f"{crt}: no key beside it ({key.name})")
        out.append(load_files(crt, key))
    return out


class CertStore:
    """The certificates in use: the files' (fixed at start) and the control plane's (replaced
    whenever it sends others). The default is the control plane's `default`, else the first
    file's, else the control plane's first."""

    def __init__(self, files: Iterable[Certificate] = ()) -> None:
        self.files = list(files)
        self.remote: list[Certificate] = []
        self.remote_default: Certificate | None = None
        self._exact: dict[str, ssl.SSLContext] = {}
        self._wild: dict[str, ssl.SSLContext] = {}
        self.default: ssl.SSLContext | None = None
        self._index()

    def replace_remote(self, certs: list[Certificate], default: Certificate | None) -> None:
        self.remote = certs
        self.remote_default = default
        self._index()

    def _index(self) -> None:
        exact: dict[str, ssl.SSLContext] = {}
        wild: dict[str, ssl.SSLContext] = {}
        for cert in (*self.files, *self.remote):  # files first: they win a name
            for name in cert.names:
                if name.startswith("*."):
                    wild.setdefault(name[2:], cert.context)
                else:
                    exact.setdefault(name, cert.context)
        self._exact, self._wild = exact, wild
        first = self.remote_default or next(iter((*self.files, *self.remote)), None)
        self.default = first.context if first is not None else None

    def __len__(self) -> int:
        return len(self.files) + len(self.remote)

    def select(self, server_name: str | None) -> ssl.SSLContext | None:
        if server_name:
            name = server_name.lower().rstrip(".")
            found = self._exact.get(name)
            if found is not None:
                return found
            _, dot, parent = name.partition(".")
            if dot:
                found = self._wild.get(parent)
                if found is not None:
                    return found
        return self.default

    def server_context(self) -> ssl.SSLContext:
        """The listener's context: every handshake gets the context `select` chooses."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])

        def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
            chosen = self.select(name)
            if chosen is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            with contextlib.suppress(ssl.SSLError):
                sock.context = chosen
            return None

        ctx.sni_callback = choose
        return ctx


def remote_certificates(items: object) -> tuple[list[Certificate], Certificate | None,
                                                 list[str]]:
    """The control plane's `tls.certificates` → (certificates, the one named `default`,
    problems); a broken one is left out and named, the others are used."""
    certs: list[Certificate] = []
    default = None
    problems: list[str] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        name, cert, key = item.get("name"), item.get("cert"), item.get("key")
        if not isinstance(name, str) or not isinstance(cert, str) or not isinstance(key, str):
            problems.append(f"kv:{name}: needs both cert and key")
            continue
        try:
            loaded = load_pem(cert, key, f"kv:{name}")
        except (CertError, OSError) as e:
            problems.append(str(e))
            continue
        certs.append(loaded)
        if name == "default":
            default = loaded
    return certs, default, problems
