"""The security suite runs against a real `kade up`, as the integration tests do."""

from tests.integration.conftest import kade

__all__ = ["kade"]
