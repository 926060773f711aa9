"""The API over HTTPS: `kade up --tls-cert/--tls-key` serves it, the CLI verifies it with
`KADE_CACERT`, the router kade starts follows it over TLS, and plain HTTP gets nothing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.harness import Kade, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kade test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "api.crt", directory / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def test_the_api_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    k = Kade(tmp_path / "kade", extra=["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        k.data_dir.mkdir(parents=True)
        with open(k.log, "ab") as out:
            k.proc = subprocess.Popen(k.command(), stdout=out, stderr=subprocess.STDOUT)
        url = f"https://{k.addr}"
        trust = ssl.create_default_context(cafile=str(cert))

        def up() -> bool:
            assert k.proc is not None and k.proc.poll() is None, k.logs()
            return httpx.get(f"{url}/ping", verify=trust, timeout=2).status_code == 200

        wait_for(up, 60, "kade over HTTPS")
        token = (k.data_dir / "management.token").read_text().strip()
        # plain HTTP on the same port is not an API
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{k.addr}/v1/apps", timeout=5)
        # the CLI, verifying the server's certificate
        env = {"KADE_ADDR": url, "KADE_TOKEN": token, "KADE_CACERT": str(cert),
               "PATH": "/usr/bin:/bin"}
        out = subprocess.run([*k.command()[:3], "apps"], capture_output=True, text=True,
                             timeout=60, env=env)
        assert out.returncode == 0, out.stderr
        # without trusting the certificate: refused, with the reason
        out = subprocess.run([*k.command()[:3], "apps"], capture_output=True, text=True,
                             timeout=60, env={**env, "KADE_CACERT": ""})
        assert out.returncode == 1 and "certificate" in out.stderr.lower()
        # the router follows the control plane over TLS
        admin = f"http://127.0.0.1:{k.router_admin_port}"
        wait_for(lambda: httpx.get(f"{admin}/table", timeout=2).json()["control_plane"][
            "connected"], 60, "the router connected over HTTPS")
    finally:
        k.cleanup()
