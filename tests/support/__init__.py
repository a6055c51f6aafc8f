"""Helpers for tests: the real server in a subprocess, the real sentry-cli, fixtures."""
