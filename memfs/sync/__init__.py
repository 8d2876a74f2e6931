"""Sync: scopes with a git remote push their history to it and merge the others'."""

from .service import Sync, remotes

__all__ = ["Sync", "remotes"]
