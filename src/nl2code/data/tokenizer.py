"""Byte-level BPE tokenizer for code and natural language (Hugging Face ``tokenizers``).

Byte-level BPE covers every byte, has no normaliser and no prefix space, so
``decode(encode(x)) == x`` for any string: whitespace, tabs, newlines and unicode included.
Special tokens are only ever produced *by id* (``encode_special_tokens`` is on), so a literal
``"<sep>"`` inside source code is tokenized as ordinary text and never becomes a control token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, EOS, MASK, SEP, EOM = "<pad>", "<eos>", "<mask>", "<sep>", "<eom>"
FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<fim_prefix>", "<fim_suffix>", "<fim_middle>"
DEFAULT_SENTINELS = 16
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer_meta.json"


def special_tokens(num_sentinels: int = DEFAULT_SENTINELS) -> list[str]:
    """The fixed special vocabulary, in id order (pad = 0)."""
    base = [PAD, EOS, MASK, SEP, EOM, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE]
    return base + [f"<mask_{i}>" for i in range(1, num_sentinels + 1)]


class CodeTokenizer:
    """Thin wrapper over a ``tokenizers.Tokenizer`` with named special-token ids."""

    def __init__(self, tokenizer: Tokenizer, num_sentinels: int = DEFAULT_SENTINELS):
        self._tok = tokenizer
        self._tok.encode_special_tokens = True
        self.num_sentinels = num_sentinels
        self._special = special_tokens(num_sentinels)
        ids = [tokenizer.token_to_id(t) for t in self._special]
        missing = [t for t, i in zip(self._special, ids) if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}")
        self._special_ids = dict(zip(self._special, ids))
        self.special_ids = frozenset(ids)

    # -- training and persistence -------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8192,
        min_frequency: int = 2,
        num_sentinels: int = DEFAULT_SENTINELS,
        show_progress: bool = False,
    ) -> CodeTokenizer:
        """Train byte-level BPE on ``texts`` (an iterable of strings, read once)."""
        specials = special_tokens(num_sentinels)
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be at least {256 + len(specials)} (bytes + specials)")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tok.train_from_iterator(_nonempty(texts), trainer=trainer)
        return cls(tok, num_sentinels)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` and a small metadata file into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (TOKENIZER_FILE + ".tmp")
        self._tok.save(str(tmp))
        tmp.replace(directory / TOKENIZER_FILE)
        meta = {"num_sentinels": self.num_sentinels, "vocab_size": self.vocab_size, "kind": "byte-level-bpe"}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> CodeTokenizer:
        directory = Path(directory)
        path = directory / TOKENIZER_FILE if directory.is_dir() else directory
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}")
        meta_path = path.parent / META_FILE
        num = DEFAULT_SENTINELS
        if not meta_path.is_file() and (path.parent / "tokenizer_config.json").is_file():
            from nl2code.hf.tokenizer import HFTokenizer  # a checkpoint folder (e.g. CodeT5's)

            return HFTokenizer.from_checkpoint(path.parent)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("kind") == "hf":  # an imported checkpoint's own tokenizer (nl2code hf import)
                from nl2code.hf.tokenizer import HFTokenizer

                return HFTokenizer.load(path.parent)
            num = int(meta["num_sentinels"])
        return cls(Tokenizer.from_file(str(path)), num)

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def decode_batch(self, batch: list[list[int]], skip_special: bool = False) -> list[str]:
        return self._tok.decode_batch(batch, skip_special_tokens=skip_special)

    # -- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int:
        if token in self._special_ids:
            return self._special_ids[token]
        tid = self._tok.token_to_id(token)
        if tid is None:
            raise KeyError(f"unknown token {token!r}")
        return tid

    def sentinel_id(self, i: int) -> int:
        """Id of ``<mask_i>`` (1-based, as in CodeGen2's span corruption)."""
        if not 1 <= i <= self.num_sentinels:
            raise ValueError(f"sentinel index {i} out of range 1..{self.num_sentinels}")
        return self._special_ids[f"<mask_{i}>"]

    pad_id = property(lambda self: self._special_ids[PAD])
    eos_id = property(lambda self: self._special_ids[EOS])
    mask_id = property(lambda self: self._special_ids[MASK])
    sep_id = property(lambda self: self._special_ids[SEP])
    eom_id = property(lambda self: self._special_ids[EOM])
    fim_prefix_id = property(lambda self: self._special_ids[FIM_PREFIX])
    fim_suffix_id = property(lambda self: self._special_ids[FIM_SUFFIX])
    fim_middle_id = property(lambda self: self._special_ids[FIM_MIDDLE])


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t:
            yield t
