"""`memfs mcp`: memory over MCP (stdio) for agents that do not speak files.

Run by the user's own agent, as that user, it works through the mount with ordinary file
calls, so the daemon decides every access exactly as it does for `cat` and `echo`. Two
tools: `memory`, with the command set, arguments and messages of Anthropic's memory tool
(`/memories` is the mount's root), and `memory_search` (memfs's ranked search).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import posixpath
import shutil
import uuid
from pathlib import Path

from . import client
from .names import quote_path

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with EEXIST instead of replacing `dst` (renameat2; memfs
    supports RENAME_NOREPLACE): a create never overwrites what appeared meanwhile."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dst))


ROOT = "/memories"
MAX_LINES = 999_999
LINE_NUMBER_WIDTH = 6
MAX_SEARCH_LIMIT = 20  # what the daemon returns at most


class ToolError(Exception):
    """A tool call that failed; its text goes back to the model as the tool's error."""


def _size(size: int) -> str:
    n = float(size)
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}B"


class Memories:
    """The memory tool's commands over one directory (the mount), as the calling user."""

    def __init__(self, mount: Path):
        self.mount = mount

    # -- paths ----------------------------------------------------------------------------
    def _rel(self, path: str) -> str:
        """`/memories/...` -> a path relative to the mount ("" for the root); refused if
        it is outside /memories or climbs out of it."""
        if not isinstance(path, str) or not (path == ROOT or path.startswith(ROOT + "/")):
            raise ToolError(f"Path must start with /memories, got: {path}")
        if "\0" in path:
            raise ToolError(f"Path {path!r} holds a NUL byte")
        rel = path[len(ROOT) :].lstrip("/")
        norm = posixpath.normpath(rel) if rel else ""
        if norm in (".", ""):
            return ""
        if norm == ".." or norm.startswith("../") or posixpath.isabs(norm):
            raise ToolError(f"Path {path} would escape /memories directory")
        return norm

    def _full(self, path: str) -> Path:
        rel = self._rel(path)
        full = self.mount / rel if rel else self.mount
        # A symlink inside memory pointing elsewhere must not lead the tool out of it.
        real = Path(os.path.realpath(full))
        mount = Path(os.path.realpath(self.mount))
        if real != mount and mount not in real.parents:
            raise ToolError(f"Path {path} would escape /memories directory")
        return full

    @staticmethod
    def _os_error(path: str, e: OSError) -> ToolError:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return ToolError(f"The path {path} does not exist. Please provide a valid path.")
        return ToolError(f"Error: {path}: {e.strerror or e}")

    def _read(self, path: str, full: Path) -> str:
        try:
            data = full.read_bytes()
        except OSError as e:
            raise self._os_error(path, e) from e
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"Unsupported file type for {path}") from None

    def _write(self, path: str, full: Path, text: str, replace: bool = True) -> None:
        """Put a file's whole content in place: a temp file beside it, written and fsynced,
        then renamed over it (or, with replace=False, renamed only if the name is free).
        On any error the temp file goes and nothing partial is left under `path`."""
        tmp = full.with_name(f".{full.name[:200]}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                os.replace(tmp, full)
            else:
                _rename_noreplace(tmp, full)
        except BaseException as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            if isinstance(e, FileExistsError):
                raise ToolError(f"File {path} already exists") from None
            if isinstance(e, PermissionError) and (why := client.refusal(self.mount, self._rel_of(tmp))):
                raise ToolError(
                    f"Error: {path} was not written: {why}. Remove the secret and write again; "
                    "the refused text is kept for you alone in .memfs/quarantine/ of the mount."
                ) from e
            if isinstance(e, OSError):
                raise self._os_error(path, e) from e
            raise

    def _rel_of(self, full: Path) -> str:
        return os.path.relpath(full, self.mount)

    def _file(self, path: str) -> Path:
        full = self._full(path)
        if not full.exists():
            raise ToolError(f"The path {path} does not exist. Please provide a valid path.")
        if not full.is_file():
            raise ToolError(f"The path {path} is not a file.")
        return full

    # -- commands -------------------------------------------------------------------------
    def view(self, path: str, view_range: list[int] | None = None) -> str:
        full = self._full(path)
        try:
            st = full.stat()
        except OSError as e:
            raise self._os_error(path, e) from e
        if full.is_dir():
            lines = [f"{_size(st.st_size)}\t{path}"]
            self._list(full, path.rstrip("/"), 1, lines)
            header = (
                f"Here're the files and directories up to 2 levels deep in {path}, excluding hidden items:"
            )
            return header + "\n" + "\n".join(lines)
        if not full.is_file():
            raise ToolError(f"Unsupported file type for {path}")
        lines = self._read(path, full).split("\n")
        if len(lines) > MAX_LINES:
            raise ToolError(f"File {path} exceeds maximum line limit of 999,999 lines.")
        start = 1
        if view_range and len(view_range) == 2:
            lo = max(1, view_range[0]) - 1
            hi = len(lines) if view_range[1] == -1 else view_range[1]
            lines, start = lines[lo:hi], lo + 1
        numbered = [f"{str(i + start).rjust(LINE_NUMBER_WIDTH)}\t{line}" for i, line in enumerate(lines)]
        return f"Here's the content of {path} with line numbers:\n" + "\n".join(numbered)

    def _list(self, d: Path, shown: str, depth: int, out: list[str]) -> None:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return
        for name in names:
            if name.startswith("."):
                continue
            item = d / name
            try:
                st = item.stat()
            except OSError:
                continue
            if item.is_dir():
                out.append(f"{_size(st.st_size)}\t{shown}/{name}/")
                if depth < 2:
                    self._list(item, f"{shown}/{name}", depth + 1, out)
            elif item.is_file():
                out.append(f"{_size(st.st_size)}\t{shown}/{name}")

    def create(self, path: str, file_text: str) -> str:
        full = self._full(path)
        if not self._rel(path):
            raise ToolError(f"The path {path} is not a file.")
        if full.exists() or full.is_symlink():
            raise ToolError(f"File {path} already exists")
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._os_error(path, e) from e
        self._write(path, full, file_text, replace=False)
        return f"File created successfully at: {path}"

    def str_replace(self, path: str, old_str: str, new_str: str) -> str:
        full = self._file(path)
        content = self._read(path, full)
        count = content.count(old_str) if old_str else 0
        if count == 0:
            raise ToolError(
                f"No replacement was performed, old_str `{old_str}` did not appear verbatim in {path}."
            )
        if count > 1:
            lines, start = [], 0
            while (pos := content.find(old_str, start)) != -1:
                lines.append(content[:pos].count("\n") + 1)
                start = pos + 1
            raise ToolError(
                f"No replacement was performed. Multiple occurrences of old_str `{old_str}` in lines: "
                f"{', '.join(map(str, lines))}. Please ensure it is unique"
            )
        changed = content[: content.find(old_str)].count("\n")
        new_content = content.replace(old_str, new_str)
        self._write(path, full, new_content)
        new_lines = new_content.split("\n")
        lo, hi = max(0, changed - 2), min(len(new_lines), changed + 3)
        snippet = [f"{str(n).rjust(LINE_NUMBER_WIDTH)}\t{new_lines[n - 1]}" for n in range(lo + 1, hi + 1)]
        return (
            "The memory file has been edited. Here is the snippet showing the change (with line numbers):\n"
            + ("\n".join(snippet))
        )

    def insert(self, path: str, insert_line: int, insert_text: str) -> str:
        full = self._file(path)
        content = self._read(path, full)
        lines = content.split("\n")
        if content.endswith("\n"):
            lines.pop()
        if not isinstance(insert_line, int) or insert_line < 0 or insert_line > len(lines):
            raise ToolError(
                f"Invalid `insert_line` parameter: {insert_line}. "
                f"It should be within the range [0, {len(lines)}]."
            )
        lines.insert(insert_line, insert_text.rstrip("\n"))
        self._write(path, full, "\n".join(lines) + "\n")
        return f"The file {path} has been edited."

    def delete(self, path: str) -> str:
        full = self._full(path)
        if not self._rel(path):
            raise ToolError("Cannot delete the /memories directory itself")
        try:
            if full.is_symlink() or full.is_file():
                full.unlink()
            elif full.is_dir():
                shutil.rmtree(full)
            else:
                raise ToolError(f"The path {path} does not exist")
        except FileNotFoundError:
            raise ToolError(f"The path {path} does not exist") from None
        except OSError as e:
            raise self._os_error(path, e) from e
        return f"Successfully deleted {path}"

    def rename(self, old_path: str, new_path: str) -> str:
        old, new = self._full(old_path), self._full(new_path)
        if not self._rel(old_path):
            raise ToolError("Cannot rename the /memories directory itself")
        if new.exists():
            raise ToolError(f"The destination {new_path} already exists")
        if not old.exists() and not old.is_symlink():
            raise ToolError(f"The path {old_path} does not exist")
        try:
            new.parent.mkdir(parents=True, exist_ok=True)
            os.rename(old, new)
        except FileNotFoundError:
            raise ToolError(f"The path {old_path} does not exist") from None
        except OSError as e:
            raise self._os_error(old_path, e) from e
        return f"Successfully renamed {old_path} to {new_path}"

    # -- search ---------------------------------------------------------------------------
    def search(self, query: str, limit: int = 10, mode: str = "hybrid") -> str:
        if mode not in ("hybrid", "keyword", "semantic"):
            raise ToolError(f"mode must be hybrid, keyword or semantic, got: {mode}")
        if not isinstance(limit, int) or limit < 1:
            raise ToolError(f"limit must be a positive integer, got: {limit}")
        try:
            result = client.search_results(self.mount, query, mode)
        except OSError as e:
            raise ToolError(f"Error: search failed: {e.strerror or e}") from e
        except (client.QueryRefused, client.AnswerError) as e:
            raise ToolError(f"Error: {e}") from None
        hits = [
            {"path": quote_path(f"{ROOT}/".encode() + h.path), **h.fields}
            for h in result.hits[: min(limit, MAX_SEARCH_LIMIT)]
        ]
        return json.dumps({"query": query, "mode": mode, "total": result.total, "hits": hits}, indent=2)


def serve(mount: Path) -> None:
    """Serve the two tools over stdio until the client hangs up."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError as McpToolError
    from mcp.types import ToolAnnotations

    from . import __version__

    mem = Memories(mount)
    server = MCPServer(
        "memfs",
        version=__version__,  # clients show and log it: an empty one reads as "unknown server"
        instructions=(
            "Your memory lives under /memories: MEMORY.md indexes your entries; team/ is your "
            "team's. View /memories first; use memory_search to find entries by words or meaning."
        ),
    )

    def run(fn, *args):
        try:
            return fn(*args)
        except ToolError as e:
            raise McpToolError(str(e)) from None

    # Plain text results, as Anthropic's memory tool gives: a structured {"result": ...}
    # would reach the model as escaped JSON (Claude Code shows structured content first).
    @server.tool(
        name="memory",
        structured_output=False,
        annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=False, open_world_hint=False),
        description=(
            "Anthropic's memory tool over memfs. command: view (path, view_range), create (path, "
            "file_text), str_replace (path, old_str, new_str), insert (path, insert_line, "
            "insert_text), delete (path), rename (old_path, new_path). Paths start with /memories."
        ),
    )
    def memory(
        command: str,
        path: str | None = None,
        file_text: str | None = None,
        old_str: str | None = None,
        new_str: str | None = None,
        insert_line: int | None = None,
        insert_text: str | None = None,
        old_path: str | None = None,
        new_path: str | None = None,
        view_range: list[int] | None = None,
    ) -> str:
        def need(**kw):
            for k, v in kw.items():
                if v is None:
                    raise McpToolError(f"Error: the {command} command needs `{k}`")

        if command == "view":
            need(path=path)
            return run(mem.view, path, view_range)
        if command == "create":
            need(path=path, file_text=file_text)
            return run(mem.create, path, file_text)
        if command == "str_replace":
            need(path=path, old_str=old_str)
            return run(mem.str_replace, path, old_str, new_str or "")
        if command == "insert":
            need(path=path, insert_line=insert_line, insert_text=insert_text)
            return run(mem.insert, path, insert_line, insert_text)
        if command == "delete":
            need(path=path)
            return run(mem.delete, path)
        if command == "rename":
            need(old_path=old_path, new_path=new_path)
            return run(mem.rename, old_path, new_path)
        raise McpToolError(f"Unknown command: {command}")

    @server.tool(
        name="memory_search",
        structured_output=False,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        description="Ranked search of the memory you may read (mode: hybrid, keyword or semantic).",
    )
    def memory_search(query: str, limit: int = 10, mode: str = "hybrid") -> str:
        return run(mem.search, query, limit, mode)

    server.run("stdio")
