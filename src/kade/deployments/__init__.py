"""Deployments: a change of an app rolled out, followed until healthy, rolled back if not."""
