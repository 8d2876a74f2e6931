"""Sync: scopes with a git remote push their history to it and merge the others'."""

from .service import Pushes, Sync, remotes

__all__ = ["Pushes", "Sync", "remotes"]
