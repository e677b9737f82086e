"""Charm libraries of github-runner."""
