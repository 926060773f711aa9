"""kade's router: the HTTP reverse proxy in front of the apps (docs/routing.md).

Pure parts: `rules` (Traefik rule syntax), `routes` (the table built from apps, called by the
control plane), `table` (the compiled table), `balancer`, `metrics`, `http`.
The process: `proxy`, `client`, `exchange`, `forwarding` and `upstream` (the data path),
`follow` (the control plane), `admin`, `accesslog`, `workers`, `main` (`run_router`),
`__main__` (`python -m kade.router`).

Nothing is imported here: the spec imports `kade.router.rules` to check rules, and must not
pull in the data path with it.
"""
