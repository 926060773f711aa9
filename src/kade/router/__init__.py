"""kade's router: the HTTP reverse proxy in front of the apps (docs/routing.md).

Pure parts: `rules` (Traefik rule syntax), `routes` (the table built from apps, called by the
control plane), `table` (the compiled table), `balancer`, `metrics`, `http`, `config`.
The process: `proxy`, `client`, `exchange`, `forwarding` and `upstream` (the data path),
`follow` (the control plane), `admin`, `accesslog`, `workers`, `main` (`run_router`),
`__main__` (`python -m kade.router`).

Imports run one way (tests/unit/test_router_imports.py): main → workers → follow → proxy →
client → forwarding → upstream → accesslog → exchange. A lower module knows a higher one
only through a protocol it declares: `exchange.ClientSide` and `exchange.UpstreamSide` (each
side of an exchange as the other sees it), `forwarding.ProxySide` (the proxy as its client
connections see it), `follow.Peers` (the worker pool as the follower feeds it).

Nothing is imported here: the spec imports `kade.router.rules` to check rules, and must not
pull in the data path with it.
"""
