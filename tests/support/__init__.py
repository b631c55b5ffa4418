"""Helpers shared by every test suite: infrastructure, processes, polling, tokens."""
