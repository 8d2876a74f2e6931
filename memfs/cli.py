"""Command line: arguments in, exit codes and one-line messages out."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import config as config_mod
from . import mount as mount_mod

DEFAULT_DATA = Path("/var/lib/memfs")
DEFAULT_CONFIG = Path("/etc/memfs/config.yaml")


def _fail(msg: str) -> int:
    print(f"memfs: {msg}", file=sys.stderr)
    return 1


def cmd_mount(args) -> int:
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
        mount_mod.setup_logging(args.debug)
        return mount_mod.run(spec, ready_fd=args.ready_fd)
    try:
        mount_mod.check(spec)
        mount_mod.start_background(spec)
    except (mount_mod.MountError, config_mod.ConfigError) as e:
        return _fail(str(e))
    print(f"memfs mounted at {spec.mountpoint} (data {spec.data}, config {spec.config})")
    return 0


def cmd_umount(args) -> int:
    try:
        mount_mod.umount(Path(args.mountpoint).absolute())
    except mount_mod.MountError as e:
        return _fail(str(e))
    return 0


def cmd_search(args) -> int:
    """Search through the mount, as the calling user: access control stays in the daemon."""
    handle = Path(args.mount) / ".memfs" / ("query.json" if args.json else "query")
    try:
        with open(handle, "r+b", buffering=0) as f:
            f.write(args.query.encode())
            out = b"".join(iter(lambda: f.read(65536), b""))
    except FileNotFoundError:
        return _fail(f"{args.mount} is not a memfs mount (no {handle}); use --mount")
    except OSError as e:
        return _fail(f"search through {args.mount} failed: {e.strerror}")
    sys.stdout.write(out.decode(errors="replace"))
    return 0


def cmd_reindex(args) -> int:
    from tqdm import tqdm

    from .index import Index
    from .store import Store

    data = Path(args.data).absolute()
    if not (data / "private").is_dir() and not (data / "teams").is_dir():
        return _fail(f"{data} is not a memfs data directory")
    cfg = config_mod.load(Path(args.config)) if args.config else config_mod.Config()
    store = Store(data, cfg.limits.max_file_bytes)
    try:
        index = Index(data, store, cfg.memory.types)
    except ValueError as e:
        if "LockBusy" in str(e) or "lock" in str(e).lower():
            return _fail(f"the index in {data} is in use by a running memfs: unmount it first")
        return _fail(f"cannot open the index in {data}: {e}")
    with tqdm(unit="entries", desc="reindex", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        n = index.rebuild(progress)
    index.close()
    print(f"indexed {n} entries in {data / 'index'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="memfs", description="Per-caller agent memory as a filesystem.")
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
    m.set_defaults(func=cmd_mount)

    u = sub.add_parser("umount", help="unmount and wait for the daemon to finish")
    u.add_argument("mountpoint")
    u.set_defaults(func=cmd_umount)

    s = sub.add_parser("search", help="ranked full-text search of the memory you may read")
    s.add_argument("query")
    s.add_argument("--mount", default="/mnt/memory", help="the memfs mount (default /mnt/memory)")
    s.add_argument("--json", action="store_true", help="JSON for scripts")
    s.set_defaults(func=cmd_search)

    r = sub.add_parser("reindex", help="rebuild the search index from the files (memfs unmounted)")
    r.add_argument("--data", default=str(DEFAULT_DATA), help=f"data directory (default {DEFAULT_DATA})")
    r.add_argument("--config", default=None, help="YAML config (for limits)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_reindex)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="memfs: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
