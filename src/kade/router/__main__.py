"""`python -m kade.router`: run the router on its own (as `kade router` does)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvloop

from kade.addresses import parse_duration
from kade.router.main import check_admin_addr, read_token, run_router
from kade.router.proxy import ProxyConfig, parse_networks
from kade.router.tls import CertStore, load_dir, load_files


def _seconds(text: str) -> float:
    """A timeout: seconds (`30`) or a duration (`500ms`, `30s`, `2m`), finite and above 0."""
    try:
        value = parse_duration(text, "timeout")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"timeout: {text!r} must be above 0")
    return value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m kade.router", description=__doc__)
    p.add_argument("--http-addr", default="0.0.0.0:8080")
    p.add_argument("--https-addr", default=None,
                   help="an HTTPS entrypoint (off unless given), e.g. 0.0.0.0:8443")
    p.add_argument("--tls-cert", action="append", default=[], type=Path,
                   help="a PEM certificate (chain) for --https-addr; repeatable, each with "
                        "its --tls-key in the same order")
    p.add_argument("--tls-key", action="append", default=[], type=Path)
    p.add_argument("--tls-dir", action="append", default=[], type=Path,
                   help="a directory of NAME.crt + NAME.key pairs; repeatable")
    p.add_argument("--admin-addr", default="127.0.0.1:8081",
                   help="loopback only unless --admin-public")
    p.add_argument("--admin-public", action="store_true",
                   help="allow a non-loopback --admin-addr (the table and metrics are shown "
                        "to whoever reaches it)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="the control plane's token (file mode 0600); else env KADE_TOKEN")
    p.add_argument("--api", default="http://127.0.0.1:7400",
                   help="the control plane's URL; several, comma-separated, are followed in "
                        "turn when one does not answer")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--name", default="router")
    p.add_argument("--access-log", default=None, help="a file, or - for standard output")
    p.add_argument("--response-header-timeout", type=_seconds, default=60.0)
    p.add_argument("--header-timeout", type=_seconds, default=10.0)
    p.add_argument("--body-timeout", type=_seconds, default=60.0,
                   help="408 when a request body sends nothing for this many seconds")
    p.add_argument("--idle-timeout", type=_seconds, default=90.0)
    p.add_argument("--grace", type=float, default=10.0, help="drain time on SIGTERM")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the HTTP address (0: one per CPU)")
    p.add_argument("--trusted-proxies", action="append", default=[], metavar="CIDR,...",
                   help="clients whose X-Forwarded-For/X-Real-IP/X-Forwarded-* are kept "
                        "(default: none, they are replaced)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per blocking query
    try:
        parse_networks(args.trusted_proxies)
        check_admin_addr(args.admin_addr, args.admin_public)
        token = read_token(args.token_file)
        certs = load_certificates(args.tls_cert, args.tls_key, args.tls_dir)
        if (args.tls_cert or args.tls_dir) and args.https_addr is None:
            raise ValueError("--tls-cert/--tls-dir need --https-addr")
    except ValueError as e:
        p.error(str(e))
    config = ProxyConfig(response_header_timeout=args.response_header_timeout,
                         header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                         body_timeout=args.body_timeout, trusted_proxies=args.trusted_proxies)
    uvloop.run(run_router(http_addr=args.http_addr, admin_addr=args.admin_addr,
                          api_url=args.api, state_dir=args.state_dir, name=args.name,
                          config=config, access_log=args.access_log, grace=args.grace,
                          workers=args.workers or os.cpu_count() or 1, token=token,
                          admin_public=args.admin_public, https_addr=args.https_addr,
                          certs=certs))


def load_certificates(certs: list[Path], keys: list[Path], dirs: list[Path]) -> CertStore:
    """The certificates of the command line; ValueError (a CertError) naming the bad one."""
    if len(certs) != len(keys):
        raise ValueError(f"--tls-cert given {len(certs)} time(s) and --tls-key {len(keys)}: "
                         f"each certificate needs its key")
    loaded = [load_files(c, k) for c, k in zip(certs, keys, strict=True)]
    for d in dirs:
        loaded += load_dir(d)
    return CertStore(loaded)


if __name__ == "__main__":
    main()
