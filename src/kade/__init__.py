"""kade: deploy, scale, configure, discover, route to, monitor and update containers."""

__version__ = "0.1.0"
