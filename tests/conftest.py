"""Shared test settings. Docker tests use the images built by examples/build-images.sh."""
