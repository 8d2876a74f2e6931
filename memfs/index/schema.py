"""What one indexed entry looks like: the Tantivy schema, document keys, path encoding."""

from __future__ import annotations

import tantivy

from ..policy import Scope

SCHEMA_VERSION = "4"  # 3: one index per scope, `dirs` for folder moves; 4: `stem`
TEXT_FIELDS = ["name", "description", "tags", "body", "stem"]
STEM_TOKENIZER = "memfs_en"
MAX_BODY_CHARS = 1_000_000  # index at most this much text of one entry
# ...read from at most its first bytes: parsing holds the GIL (a 9 MiB file of random bytes
# took 205 ms, the FUSE loop waiting meanwhile; 256 KiB take 6 ms). Real entries are < 25 KB.
MAX_INDEXED_BYTES = 256 << 10


def build_schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_text_field("key", stored=True, tokenizer_name="raw")  # "<scope>\0<path>": unique
    b.add_text_field("scope", stored=True, tokenizer_name="raw")  # "private:alice"
    b.add_text_field("relpath", stored=True, tokenizer_name="raw")
    # Every folder above the entry ("a", "a/b"): a folder move or a path: filter is one
    # term lookup, never a regex (whose automaton has a size limit and leaks memory).
    b.add_text_field("dirs", stored=False, tokenizer_name="raw")
    b.add_text_field("type", stored=True, tokenizer_name="raw")
    b.add_text_field("tag", stored=False, tokenizer_name="raw")
    b.add_text_field("name", stored=True)
    b.add_text_field("description", stored=True)
    b.add_text_field("tags", stored=True)
    b.add_text_field("body", stored=True)
    # All the text again, stemmed and without stop words: "pets" finds "pet", and a
    # question's "what does ... have" adds nothing. The raw fields keep exact words
    # (names, identifiers) ranked above their stems.
    b.add_text_field("stem", stored=False, tokenizer_name=STEM_TOKENIZER)
    b.add_integer_field("mtime", stored=True, fast=True)
    b.add_text_field("problems", stored=True, tokenizer_name="raw")
    return b.build()


def stem_analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


ENTRY_SUFFIX = b".md"  # what makes a file an entry; hot paths test it inline


def is_entry(path: bytes) -> bool:
    return path.endswith(ENTRY_SUFFIX)


def path_text(path: bytes) -> str:
    """A name as Tantivy can store it: UTF-8 as is; other bytes as "\0x" + hex (names
    cannot hold NUL, so this never collides with a real name). Storage only: a path is
    shown by names.quote_path."""
    try:
        return path.decode("utf-8")
    except UnicodeDecodeError:
        return "\0x" + path.hex()


def path_bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:]) if text.startswith("\0x") else text.encode("utf-8")


def doc_key(scope: Scope, path: bytes) -> str:
    return f"{scope}\0{path_text(path)}"


def split_key(key: str) -> tuple[str, bytes]:
    scope, _, text = key.partition("\0")
    return scope, path_bytes(text)


def folders(path: bytes) -> list[str]:
    """The `dirs` terms of an entry: each folder above it, as path_text."""
    parts = path.split(b"/")[:-1]
    return [path_text(b"/".join(parts[: i + 1])) for i in range(len(parts))]
