"""A small typed client of kade's HTTP API, used by the CLI (and by processes on other nodes)."""

from kade.client.http import DEFAULT_ADDR, Client, ClientError, api_url

__all__ = ["DEFAULT_ADDR", "Client", "ClientError", "api_url"]
