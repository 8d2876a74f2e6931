"""Text -> unit vectors for semantic search, on this machine, never over the network.

The default, WordLlama, is a static embedding: every token has a fixed vector (a row of a
32000 x 256 matrix shipped inside the `wordllama` wheel) and a text's vector is the mean
of its tokens' rows. It needs no model runtime and embeds ~100k short texts a second.

We load its two files ourselves rather than through `wordllama.WordLlama.load`: that
loader looks for the tokenizer under `wordllama/tokenizer/` while the wheel ships it under
`wordllama/tokenizers/` (and then tries Hugging Face), its batches pad every text to the
longest one (64 texts next to one 1 MB entry is a multi-GB array), and importing the
package reconfigures the root logger.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..once import Once

if TYPE_CHECKING:  # imported where used: a mount that never embeds needs no numpy (~0.08 CPU-s)
    import numpy as np

# Tokenizing runs in our worker threads, behind our limiters: no second thread pool.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("memfs.index")

MAX_CHARS = 16_384  # of one text: the mean of more tokens says little more, and costs
WORDLLAMA_DIMS = (64, 128, 256)  # Matryoshka prefixes of the shipped 256-d weights
WORDLLAMA_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
WORDLLAMA_WEIGHTS = "weights/l2_supercat_256.safetensors"


class EmbedderError(Exception):
    """The configured embedder cannot be loaded; the message says what to do."""


class Embedder:
    """Turns texts into L2-normalised float32 rows (an empty text gives a zero row)."""

    id: str  # names the model and its settings: vectors made by another id are redone
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def release_if_idle(self, seconds: float) -> bool:
        """Let go of a model not used for `seconds` (loaded again when next needed)."""
        return False


def _normalise(m: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.divide(m, norms, out=m, where=norms > 0)
    return m


def _package_dir(name: str) -> Path:
    """Where a package is installed, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"search.embedder: the Python package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class _Model:
    encode: Callable[..., list]  # the tokenizer's batch encoder
    matrix: np.ndarray  # token id -> float32 row of `dim`


class WordLlama(Embedder):
    """The model's two files are read on the first embed, not at mount: ~0.17 CPU-s (the
    tokenizer's JSON, the matrix made float32) that a mount whose memory nobody writes or
    searches by meaning never needs. That they are there is checked here, so a missing
    model still stops the mount with one line."""

    def __init__(self, dim: int = 256):
        if dim not in WORDLLAMA_DIMS:
            raise EmbedderError(f"search.dim: wordllama offers {WORDLLAMA_DIMS}, not {dim}")
        self._pkg = pkg = _package_dir("wordllama")
        for name in (WORDLLAMA_TOKENIZER, WORDLLAMA_WEIGHTS):
            if not (pkg / name).is_file():
                raise EmbedderError(f"search.embedder: cannot load WordLlama from {pkg}: {name} is missing")
        self._model: Once[_Model] = Once(lambda: self._load())  # read at the first embed
        self._used = 0.0  # time.monotonic() of the last embed
        self.dim = dim
        self.id = f"wordllama-l2_supercat-{dim}"

    def _loaded(self) -> _Model:
        self._used = time.monotonic()
        return self._model.get()

    def release_if_idle(self, seconds: float) -> bool:
        """The daemon embeds only queries (documents are embedded by its worker): after a
        quiet spell its ~50 MiB of tokenizer and matrix go, and the next query reads them
        again (~0.17 CPU-s)."""
        if self._model.loaded and time.monotonic() - self._used > seconds:
            self._model.clear()
            return True
        return False

    def _load(self) -> _Model:
        import numpy as np
        from safetensors import safe_open
        from tokenizers import Tokenizer

        pkg = self._pkg
        try:
            tok = Tokenizer.from_file(str(pkg / WORDLLAMA_TOKENIZER))
            with safe_open(str(pkg / WORDLLAMA_WEIGHTS), framework="np") as f:
                weights = f.get_tensor("embedding.weight")
        except Exception as e:
            raise EmbedderError(f"search.embedder: cannot load WordLlama from {pkg}: {e}") from e
        tok.no_padding()
        tok.no_truncation()
        # Without character offsets (tokenizers >= 0.20): ~13% faster, and only ids are used.
        encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
        return _Model(encode, np.ascontiguousarray(weights[:, : self.dim], dtype=np.float32))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        model = self._loaded()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encs = model.encode([t[:MAX_CHARS].strip() for t in texts], add_special_tokens=False)
        last = model.matrix.shape[0] - 1
        # Mean of each text's token rows, one text at a time: a gather of at most
        # MAX_CHARS tokens (16 MB), and 20x faster than one np.add.reduceat over a batch.
        for i, enc in enumerate(encs):
            if enc.ids:
                ids = np.minimum(np.asarray(enc.ids, dtype=np.intp), last)
                out[i] = model.matrix[ids].mean(axis=0)
        return _normalise(out)


class FastEmbed(Embedder):
    """A sentence-transformer the admin has on disk, run by fastembed (ONNX), offline.
    Loaded at mount, unlike WordLlama: its dimension (the index's, and part of its id) is
    known only from the model."""

    def __init__(self, model: str, cache_dir: str | None):
        if importlib.util.find_spec("fastembed") is None:
            raise EmbedderError("search.embedder: fastembed is not installed (pip install fastembed)")
        os.environ["HF_HUB_OFFLINE"] = "1"  # never download at run time
        import numpy as np
        from fastembed import TextEmbedding

        try:
            self.model = TextEmbedding(model_name=model, cache_dir=cache_dir, local_files_only=True)
            probe = np.asarray(next(iter(self.model.embed(["probe"]))), dtype=np.float32)
        except Exception as e:
            raise EmbedderError(
                f"search.model: fastembed cannot load {model!r} from {cache_dir or 'its cache'}: {e}"
            ) from e
        self.dim = int(probe.shape[0])
        self.id = f"fastembed-{model}-{self.dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self.model.embed([t[:MAX_CHARS] for t in texts], batch_size=32)
        return _normalise(np.asarray(list(rows), dtype=np.float32))


def embed_text(e) -> str:
    """What of an entry is embedded: its name (a slug: dashes read as spaces), its
    description, tags and body."""
    name = e.name.replace("-", " ").replace("_", " ")
    return "\n".join(filter(None, (name, e.description, " ".join(e.tags), e.body)))


def load(conf) -> Embedder | None:
    """The embedder a SearchConf names (None: keyword search only)."""
    if conf.embedder == "none":
        return None
    if conf.embedder == "wordllama":
        return WordLlama(conf.dim)
    return FastEmbed(conf.model, conf.cache_dir)


# -- documents embedded in a worker process ------------------------------------------------
# Tokenizing a burst of new entries (0.3 ms each, in Rust threads on every core) in the
# daemon slowed the callers' reads right after it 1.3-2.4x (scripts/bench, `embed on/off`):
# documents are embedded by a niced process of the daemon's; a query, one short text, is
# still embedded in the daemon (no round trip to wait for).
_worker: Embedder | None = None


def start_worker(conf) -> None:
    global _worker
    _worker = load(conf)


def embed_in_worker(texts: list[str]) -> np.ndarray:
    assert _worker is not None, "embedding worker not started"
    return _worker.embed(texts)
