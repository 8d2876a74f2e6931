"""`memfs log`, `memfs restore` and `memfs purge`: history from a terminal, through the mount, as the
calling user (the daemon decides what that user may see, as for any file)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import sys
from pathlib import Path

from .. import client
from ..names import STAMP, quote_path


class CommandError(Exception):
    """One line for the person at the terminal."""


def _rel(mount: Path, path: str) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(mount)
        except ValueError:
            raise CommandError(f"{_shown(path)} is not under the mount {mount}; use --mount") from None
    rel = os.path.normpath(str(p)).strip("/")
    if rel in ("", ".") or rel.startswith(".."):
        raise CommandError(f"{_shown(path)}: give a file under the mount")
    return rel


def versions(mount: Path, rel: str) -> list[os.DirEntry]:
    try:
        return client.versions(mount, rel)
    except FileNotFoundError:
        if not client.is_mount(mount):
            raise CommandError(f"{mount} is not a memfs mount; use --mount") from None
        raise CommandError(f"{_shown(rel)}: no history (never written, or pruned)") from None
    except NotADirectoryError:
        raise CommandError(f"{_shown(rel)}: no history") from None
    except OSError as e:
        raise CommandError(f"{_shown(rel)}: cannot read its history: {e.strerror}") from None


def _shown(text: str) -> str:
    """A path or version name from the command line or the mount, as memfs shows paths."""
    return quote_path(os.fsencode(text))


def parse_when(text: str) -> str:
    """A time as the stamp versions are named with (UTC): accepts 20261121T120102Z,
    2026-11-21T12:01:02Z, 2026-11-21 12:01 and 2026-11-21 (end of that day)."""
    if STAMP.fullmatch(text):
        return text
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--at {text!r}: give a version name or a time like 2026-11-21T12:01:02Z"
        ) from None
    if len(text) == 10:  # a date: the end of that day
        when = when.replace(hour=23, minute=59, second=59)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def log(mount: Path, path: str | None) -> str:
    if path is None:
        try:
            return client.log(mount)
        except FileNotFoundError:
            raise CommandError(f"{mount} is not a memfs mount with history; use --mount") from None
    rel = _rel(mount, path)
    out = []
    for e in reversed(versions(mount, rel)):
        out.append(f"{_shown(e.name)}\t{e.stat().st_size} bytes\n")
    return "".join(out)


def restore(mount: Path, path: str, at: str | None) -> str:
    rel = _rel(mount, path)
    found = versions(mount, rel)
    if not found:
        raise CommandError(f"{_shown(rel)}: no versions")
    if at is None:
        chosen = found[-1]
    elif any(e.name == at for e in found):
        chosen = next(e for e in found if e.name == at)
    else:
        stamp = parse_when(at)
        earlier = [e for e in found if e.name[:16] <= stamp]
        if not earlier:
            raise CommandError(
                f"{_shown(rel)}: no version at or before {stamp} (the oldest is {_shown(found[0].name)})"
            )
        chosen = earlier[-1]
    data = Path(chosen.path).read_bytes()
    client.replace(mount, rel, data)
    return f"restored {_shown(rel)} from {_shown(chosen.name)} ({len(data)} bytes)\n"


_PURGE_REFUSED = {
    errno.EACCES: "you may not purge it: only who may write its memory may (the owner; a team's members)",
    errno.ENOENT: "no such version in its history (memfs log PATH lists them)",
    errno.EBUSY: "that content is what a file holds now: rewrite or remove the file, then purge",
    errno.EAGAIN: "history cannot commit that memory right now: try again",
}


def purge(mount: Path, path: str, version: str | None, every: bool) -> str:
    rel = _rel(mount, path)
    if (version is None) == (not every):
        raise CommandError("give --version VERSION (memfs log PATH lists them) or --all")
    try:
        answer = client.purge(mount, rel, None if every else [version or ""])
    except FileNotFoundError:
        if not client.is_mount(mount):
            raise CommandError(f"{mount} is not a memfs mount with history; use --mount") from None
        raise CommandError(f"{_shown(rel)}: {_PURGE_REFUSED[errno.ENOENT]}") from None
    except OSError as e:
        why = _PURGE_REFUSED.get(e.errno or 0, e.strerror)
        raise CommandError(f"{_shown(rel)}: {why}") from None
    except client.AnswerError as e:
        raise CommandError(str(e)) from None
    n = len(answer["purged"])
    out = [f"purged {n} version{'s' if n != 1 else ''} from the history of {answer.get('scope')}:\n"]
    out += [f"  {v}\n" for v in answer["purged"]]
    out.append(f"{answer.get('commits_rewritten')} commits rewritten in {answer.get('seconds')} s; ")
    out.append("the file itself was not touched\n")
    if answer.get("remote"):
        out.append(f"its remote: {answer['remote']}\n")
    return "".join(out)


def main(args) -> int:
    mount = Path(args.mount).absolute()
    try:
        if args.history_command == "log":
            sys.stdout.write(log(mount, args.path))
        elif args.history_command == "purge":
            sys.stdout.write(purge(mount, args.path, args.version, args.all))
        else:
            sys.stdout.write(restore(mount, args.path, args.at))
    except CommandError as e:
        print(f"memfs: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"memfs: {e.filename or mount}: {e.strerror}", file=sys.stderr)
        return 1
    return 0
