"""Command line: arguments in, exit codes and one-line messages out."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import mounthelper

if TYPE_CHECKING:
    from . import config as config_mod

# Each command imports what it uses: every `memfs` call (a mount and an unmount per test
# mount, agents' searches) otherwise paid for all of them (~0.15 CPU-s, 3x a bare start).

DEFAULT_DATA = Path("/var/lib/memfs")
DEFAULT_CONFIG = Path("/etc/memfs/config.yaml")
DEFAULT_MOUNT = Path("/mnt/memory")


def _fail(msg: str) -> int:
    print(f"memfs: {msg}", file=sys.stderr)
    return 1


def cmd_mount(args) -> int:
    from . import config as config_mod
    from . import mount as mount_mod
    from . import mountnotes

    config = args.config
    if config is None:
        config = DEFAULT_CONFIG
        try:
            config_mod.ensure_default(config)
        except OSError as e:
            return _fail(f"cannot create default config {config}: {e.strerror}")
    spec = mount_mod.MountSpec(
        mountpoint=Path(args.mountpoint).absolute(),
        data=Path(args.data).absolute(),
        config=Path(config).absolute(),
        debug=args.debug,
    )
    if args.foreground:
        from . import daemonlog

        daemonlog.setup(args.debug, Path(args.log_file) if args.log_file else None)
        return mount_mod.run(spec, ready_fd=args.ready_fd)
    try:
        cfg, ids = mount_mod.check(spec, clear_dead=False)  # the daemon clears a dead mount, in its log
        mount_mod.start_background(spec)
    except (mount_mod.MountError, config_mod.ConfigError) as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot mount {spec.mountpoint}: {e.strerror or e}")
    implicit = " (the default: no --config given)" if args.config is None else ""
    print(
        f"memfs mounted at {spec.mountpoint} (data {spec.data}, "
        f"config {spec.config}{implicit}: {mountnotes.summary(cfg)})"
    )
    if warning := mountnotes.warning(spec.data, spec.config, ids):
        print(f"memfs: warning: {warning}", file=sys.stderr)
    return 0


def cmd_umount(args) -> int:
    from . import mount as mount_mod

    try:
        note = mount_mod.umount(Path(args.mountpoint).absolute(), lazy=args.lazy)
    except mount_mod.MountError as e:
        return _fail(str(e))
    if note:
        print(note)
    return 0


def cmd_search(args) -> int:
    """Search through the mount, as the calling user: access control stays in the daemon."""
    from . import client

    try:
        out = client.search(Path(args.mount), args.query, args.mode, args.json)
    except FileNotFoundError:
        return _fail(f"{args.mount} is not a memfs mount (no {client.CONTROL}/{client.QUERY}); use --mount")
    except OSError as e:
        return _fail(f"search through {args.mount} failed: {e.strerror}")
    sys.stdout.write(out.decode(errors="replace"))
    return 0


def cmd_sync(args) -> int:
    """Sync the caller's scopes with their remotes now, through the mount, and say what moved."""
    from . import client

    try:
        answer = client.sync(Path(args.mount))
    except FileNotFoundError:
        return _fail(f"{args.mount}: no remote is configured for any memory you own (or not a memfs mount)")
    except OSError as e:
        return _fail(f"sync through {args.mount} failed: {e.strerror}")
    except client.AnswerError as e:
        return _fail(str(e))
    if not answer.scopes:
        sys.stdout.write("no remote is configured for your memory\n")
        return 0
    # a line per scope for a person (YAML comments), then the daemon's answer for a program
    sys.stdout.write("".join(f"# {_moved(sc)}\n" for sc in answer.scopes) + answer.text)
    return 1 if answer.failed else 0  # any scope's error fails the command, even if others synced


def _moved(scope: dict) -> str:
    """What one scope's round did, in one line."""
    name, r = scope.get("scope"), scope.get("last_round") or {}
    if scope.get("error"):
        return f"{name}: FAILED: {scope['error']} ({scope.get('commits_waiting', 0)} commits waiting)"
    parts = [f"pushed {r.get('pushed', 0)} commits"]
    if r.get("fetched"):
        parts.append(f"took in {r.get('files', 0)} files, removed {r.get('removed', 0)}")
        if r.get("conflicts"):
            parts.append(f"{len(r['conflicts'])} conflict copies")
        if r.get("refused"):
            parts.append(f"refused {len(r['refused'])}")
    else:
        parts.append("nothing new on the remote")
    return f"{name}: " + ", ".join(parts)


def cmd_reindex(args) -> int:
    from tqdm import tqdm

    from . import config as config_mod
    from . import privilege
    from .index import Index, IndexBusy, embed
    from .store import Store

    data = Path(args.data).absolute()
    if not (data / "private").is_dir() and not (data / "teams").is_dir():
        return _fail(f"{data} is not a memfs data directory")
    try:
        cfg = _load_config(args.config, data)
    except config_mod.ConfigError as e:
        return _fail(str(e))
    store = Store(data, cfg.limits.max_file_bytes)
    try:
        embedder = embed.load(cfg.search)
    except embed.EmbedderError as e:
        return _fail(str(e))
    try:
        index = Index(data, store, cfg.memory.types, embedder)
    except IndexBusy:
        return _fail(f"the index in {data} is in use by a running memfs: unmount it first")
    except (OSError, ValueError) as e:
        return _fail(f"cannot open the index in {data}: {e}")
    with tqdm(unit="entries", desc="reindex", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        n = index.rebuild(progress)
    index.close()
    try:
        privilege.hand_over(data, cfg.daemon_user, whole=False)
    except (privilege.PrivilegeError, OSError) as e:
        return _fail(f"indexed, but cannot hand {data / 'index'} to the daemon user: {e}")
    print(f"indexed {n} entries in {data / 'index'}")
    return 0


def _config_path(arg: str | None, data: Path | None = None, mount: Path | None = None) -> Path | None:
    """The config a command uses: --config if given (an error if the live mount of the
    same data runs another), else the one the data was mounted with, else the default file
    if there is one, else None (built-in defaults)."""
    from . import config as config_mod
    from . import mount as mount_mod

    served, live = mount_mod.config_of(data, mount)
    if arg is not None:
        if live is not None and served is not None and Path(arg).resolve() != served.resolve():
            raise config_mod.ConfigError(
                f"--config {arg} differs from {served}, the config of the live mount at {live}: "
                "drop --config, or unmount and mount again with it"
            )
        return Path(arg)
    if served is not None and served.exists():
        return served
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _load_config(arg: str | None, data: Path | None = None) -> config_mod.Config:
    from . import config as config_mod

    return config_mod.load(_config_path(arg, data))


def cmd_import(args) -> int:
    from tqdm import tqdm

    from . import client, importer, privilege
    from . import config as config_mod
    from . import mount as mount_mod
    from .identity import Identities
    from .store import Store

    src, data = Path(args.source).absolute(), Path(args.data).absolute()
    try:
        cfg = _load_config(args.config, data)
        ids = Identities(cfg)
    except config_mod.ConfigError as e:
        return _fail(str(e))
    if not config_mod.NAME_RE.fullmatch(args.user):
        return _fail(f"--user {args.user!r} is not a valid user name")
    team = args.team or ids.team_of(args.user)
    if args.team is not None and args.team not in cfg.teams:
        return _fail(f"--team {args.team!r}: no such team in the config")
    report = importer.Report()
    try:
        # The source is opened once, below it nothing is followed, and only --user's memory
        # (and its team's) is planned: the source may belong to someone else (importer.Folder).
        items, add_index = importer.plan(args.format, src, args.user, team, cfg, report, args.claim)
    except importer.ImportFailed as e:
        return _fail(str(e))
    if not args.dry_run:
        Store.init_layout(data)
    with tqdm(total=len(items), unit="files", desc="import", disable=args.quiet) as bar:
        importer.apply(
            items, data, report, args.dry_run, progress=bar.update, add_index=add_index, owner=args.user
        )
    if not args.dry_run:
        try:  # written as root (it reads users' folders): the daemon user must manage them
            privilege.hand_over(data, cfg.daemon_user, whole=True)
        except (privilege.PrivilegeError, OSError) as e:
            return _fail(f"imported, but cannot hand {data} to the daemon user: {e}")
    if report.written:
        # A live mount caches what it served: tell it which files changed behind its back.
        for mnt in mount_mod.mounts_of(data):
            try:
                client.refresh(mnt, [os.fsencode(p) for p in report.written])
            except OSError as e:
                print(f"memfs: could not notify the mount at {mnt}: {e.strerror}", file=sys.stderr)
    print(report.summary(args.dry_run))
    if args.verbose:
        for what in report.created:
            print(f"  created {what}")
        for what, why in report.skipped:
            print(f"  skipped {what}: {why}")
    return 0


def cmd_mcp(args) -> int:
    """An MCP server on stdio for the calling user's agent, working through the mount."""
    from . import client, mcp_server

    mount = Path(args.mount).absolute()
    try:
        ok = client.is_mount(mount)
    except PermissionError:  # unknown_uids: deny, and this uid is not in users:
        return _fail(f"{mount} refuses uid {os.getuid()}: ask the admin to map it (users.<name>: {{uid: N}})")
    if not ok:
        return _fail(f"{mount} is not a memfs mount (no {client.CONTROL}/); use --mount")
    try:
        mcp_server.serve(mount)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_ui(args) -> int:
    """A web page over the calling user's memory, served on loopback, working through the mount."""
    import logging

    from . import client
    from .ui import app

    mount = Path(args.mount).absolute()
    if not client.is_mount(mount):
        return _fail(f"{mount} is not a memfs mount (no {client.CONTROL}/); use --mount")
    # one line per request refused or memory changed, on stderr: the URL alone goes to stdout
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        app.serve(mount, args.listen)
    except app.ListenError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot serve on {args.listen}: {e.strerror or e}")
    except KeyboardInterrupt:
        pass
    return 0


def cmd_doctor(args) -> int:
    import json

    from . import config as config_mod
    from . import doctor
    from . import mount as mount_mod

    data = Path(args.data).absolute() if args.data else None
    mount: Path | None = Path(args.mount).absolute() if args.mount else None
    if mount is None:  # --data alone: check the mount that serves it, not /mnt/memory
        live = mount_mod.mounts_of(data) if data is not None else [DEFAULT_MOUNT]
        mount = live[0] if live else None
    try:
        config = _config_path(args.config, data, mount)
    except config_mod.ConfigError as e:
        return _fail(str(e))
    checks = doctor.run(mount, data, config)
    findings: list[str] = []
    if args.secrets:  # exit 3: the scan found secrets (and nothing else failed)
        if data is None or not os.access(data, os.R_OK | os.X_OK):
            return _fail("--secrets reads the data directory: give --data DIR and run it as root")
        check, findings = doctor.secrets(data, config, args.scope)
        checks.append(check)
    if args.json:
        out = [c.as_dict() for c in checks]
        print(json.dumps(out + ([{"findings": findings}] if args.secrets else []), indent=2))
    else:
        for c in checks:
            print(c.line())
        for line in findings:
            print(f"     {line}")
    if not all(c.ok for c in checks if c.name != "secrets"):
        return 1
    return 3 if findings else 0


def _size(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _scope_line(s: dict) -> str:
    """One scope of `memfs status --all`: usage against each limit, history, index, sync."""
    parts = [
        f"{s['scope']:<24}",
        f"{_size(s['bytes'])}/{_size(s['max_bytes'])} ({100 * s['bytes'] / max(s['max_bytes'], 1):.0f}%)",
        f"{s['files']}/{s['max_files']} files",
    ]
    if s.get("history_bytes") is not None:
        hist = f"history {_size(s['history_bytes'])}"
        if s["history_waiting"]:
            hist += f", {s['history_waiting']} waiting {s['history_lag']:.0f}s"
        if s["history_failures"]:
            hist += f", {s['history_failures']} failed commits"
        parts.append(hist)
    if s.get("index_waiting"):
        parts.append(f"index {s['index_waiting']} queued {s['index_lag']:.0f}s")
    sync = s.get("sync")
    if sync is not None:
        if sync["failures"] or sync["error"]:  # error alone: its server is down, it waits
            parts.append(f"sync FAILING x{sync['failures']}: {sync['error']}")
        else:
            parts.append(f"sync ok, {sync['commits_waiting']} commits waiting")
    return "  ".join(parts)


def cmd_status(args) -> int:
    """The caller's problems, or (--all, for root and daemon.admin_group) every scope's state."""
    import json

    from . import client

    mount = Path(args.mount).absolute()
    if not client.is_mount(mount):
        return _fail(f"{mount} is not a memfs mount (no {client.CONTROL}/); use --mount")
    try:
        if not args.all:
            lines = client.status(mount)
            if args.json:
                print(json.dumps(lines, indent=1))
            else:
                print("\n".join(lines) if lines else "nothing wrong")
            return 0
        snap = client.admin(mount)
    except PermissionError:
        return _fail("--all is for root and members of daemon.admin_group (see the README's Config)")
    except (OSError, client.AnswerError) as e:
        return _fail(f"cannot read the mount's state: {e}")
    if args.json:
        print(json.dumps(snap, indent=1))
        return 0
    for s in snap["scopes"]:
        print(_scope_line(s))
    held = ", ".join(f"{u} {n}" for u, n in snap["open_handles"].items()) or "none"
    print(f"open handles: {held}")
    print(f"embedding backlog: {snap['embedding_backlog']} entries")
    print(f"daemon: {_size(snap['rss_bytes'])} resident, {snap['threads']} threads")
    return 0


def _history_cmd(args) -> int:
    from .history import commands

    return commands.main(args)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="memfs", description="Per-caller agent memory as a filesystem.")
    ap.add_argument("--version", action="version", version=f"memfs {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mount", help="mount memfs (returns once the mount is ready)")
    m.add_argument("mountpoint")
    m.add_argument("--data", default=str(DEFAULT_DATA), help=f"data directory (default {DEFAULT_DATA})")
    m.add_argument(
        "--config", default=None, help=f"YAML config (default {DEFAULT_CONFIG}, created if absent)"
    )
    m.add_argument("--foreground", action="store_true", help="stay attached and log to stderr")
    m.add_argument("--debug", action="store_true", help="log every handler call")
    m.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    m.add_argument("--log-file", default=None, help=argparse.SUPPRESS)
    m.set_defaults(func=cmd_mount)

    u = sub.add_parser("umount", help="unmount and wait for the daemon to finish")
    u.add_argument("mountpoint")
    u.add_argument(
        "--lazy",
        action="store_true",
        help="detach now even if in use; the daemon ends when the last user lets go (no wait)",
    )
    u.set_defaults(func=cmd_umount)

    s = sub.add_parser("search", help="ranked search (keyword, semantic or both) of the memory you may read")
    s.add_argument("query")
    s.add_argument(
        "--mode",
        choices=("hybrid", "keyword", "semantic"),
        help="how to rank (default hybrid: keyword and semantic together); same as mode: in the query",
    )
    s.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    s.add_argument("--json", action="store_true", help="JSON for scripts")
    s.set_defaults(func=cmd_search)

    mc = sub.add_parser("mcp", help="MCP server on stdio: the memory tool and memory_search, as you")
    mc.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    mc.set_defaults(func=cmd_mcp)

    ui = sub.add_parser("ui", help="a web page to see, search, edit and roll back your memory, as you")
    ui.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    ui.add_argument(
        "--listen", default="127.0.0.1:0", help="loopback HOST:PORT (default 127.0.0.1 and a free port)"
    )
    ui.set_defaults(func=cmd_ui)

    lg = sub.add_parser("log", help="latest changes you may read, or the versions of one file")
    lg.add_argument("path", nargs="?", default=None, help="a file under the mount: list its versions")
    lg.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    lg.set_defaults(func=_history_cmd, history_command="log")

    rs = sub.add_parser("restore", help="bring back a file's version (undelete, roll back)")
    rs.add_argument("path", help="the file, as under the mount")
    rs.add_argument("--at", default=None, help="a version name or a UTC time (default: the latest version)")
    rs.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    rs.set_defaults(func=_history_cmd, history_command="restore")

    st = sub.add_parser("status", help="what is wrong with your memory; --all: every user's state (admins)")
    st.add_argument("--all", action="store_true", help="every user and team: usage, history, index, sync")
    st.add_argument("--json", action="store_true", help="JSON for scripts")
    st.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    st.set_defaults(func=cmd_status)
    pg = sub.add_parser("purge", help="take versions of a file out of its history for good (a leaked secret)")
    pg.add_argument("path", help="the file, as under the mount")
    pg.add_argument("--version", default=None, help="the version to purge (memfs log PATH lists them)")
    pg.add_argument("--all", action="store_true", help="every version except what the file holds now")
    pg.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    pg.set_defaults(func=_history_cmd, history_command="purge")

    sy = sub.add_parser("sync", help="sync your memory with its git remotes now; say what moved")
    sy.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    sy.set_defaults(func=cmd_sync)

    i = sub.add_parser("import", help="bring existing memory in (idempotent)")
    i.add_argument("source", help="a memory dir, a bot's legacy layout, or a per-user JSON store")
    i.add_argument("--user", required=True, help="the memfs user that receives it")
    i.add_argument("--team", default=None, help="the team that receives a team/ folder (default: the user's)")
    i.add_argument("--data", default=str(DEFAULT_DATA), help=f"data directory (default {DEFAULT_DATA})")
    i.add_argument("--config", default=None, help=f"YAML config (default {DEFAULT_CONFIG} if present)")
    i.add_argument("--format", choices=["auto", "dir", "legacy", "json"], default="auto")
    i.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    i.add_argument(
        "--claim",
        action="store_true",
        help="import a source whose path names another user's id (users.<u>.aliases) into --user's memory",
    )
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.add_argument("--verbose", action="store_true", help="list every file")
    i.set_defaults(func=cmd_import)

    d = sub.add_parser("doctor", help="check FUSE, the mount, the data dir, the config and the index")
    d.add_argument(
        "--mount", default=None, help="the memfs mount (default: the one serving --data, else /mnt/memory)"
    )
    d.add_argument("--data", default=None, help="data directory to check (readable by root)")
    d.add_argument("--config", default=None, help=f"YAML config (default {DEFAULT_CONFIG} if present)")
    d.add_argument("--json", action="store_true")
    d.add_argument(
        "--secrets",
        action="store_true",
        help="scan files and every version in history for secrets (with --data, as root; exit 3 if any)",
    )
    d.add_argument("--scope", default=None, help="with --secrets: one scope only (private:alice, team:eng)")
    d.set_defaults(func=cmd_doctor)

    r = sub.add_parser("reindex", help="rebuild the search index from the files (memfs unmounted)")
    r.add_argument("--data", default=str(DEFAULT_DATA), help=f"data directory (default {DEFAULT_DATA})")
    r.add_argument("--config", default=None, help=f"YAML config (default {DEFAULT_CONFIG} if present)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_reindex)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="memfs: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    commands = set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)
    if mounthelper.is_helper_call(argv, commands):  # mount(8), fstab: memfs SOURCE DIR -o OPTS
        try:
            argv = mounthelper.translate(argv)
        except mounthelper.HelperError as e:
            return _fail(str(e))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
