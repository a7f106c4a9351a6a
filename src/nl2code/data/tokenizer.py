"""Byte-level BPE tokenizer for code and natural language (Hugging Face ``tokenizers``).

Byte-level BPE covers every byte, has no normaliser and no prefix space, so
``decode(encode(x)) == x`` for any string: whitespace, tabs, newlines and unicode included.
Special tokens are only ever produced *by id* (``encode_special_tokens`` is on), so a literal
``"<sep>"`` inside source code is tokenized as ordinary text and never becomes a control token.

:class:`HFTokenizer` serves a pre-trained checkpoint's own tokenizer through the same interface.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from nl2code.utils.io import atomic_path, atomic_write

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
        split_spaces: bool = False,
    ) -> CodeTokenizer:
        """Train byte-level BPE on ``texts`` (an iterable of strings, read once).

        ``split_spaces``: every whitespace character is a token of its own, so a word is the same token
        after a space (in an utterance) and after punctuation (``TextContains(FB)``): a model can then copy
        a value from the utterance into the code by attending to it. Sequences get longer.
        """
        specials = special_tokens(num_sentinels)
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be at least {256 + len(specials)} (bytes + specials)")
        tok = Tokenizer(models.BPE())
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if split_spaces:
            spaces = pre_tokenizers.Split(Regex(r"\s"), behavior="isolated")
            tok.pre_tokenizer = pre_tokenizers.Sequence([spaces, byte_level])
        else:
            tok.pre_tokenizer = byte_level
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
        with atomic_path(directory / TOKENIZER_FILE) as tmp:
            self._tok.save(str(tmp))
        meta = {"num_sentinels": self.num_sentinels, "vocab_size": self.vocab_size, "kind": "byte-level-bpe"}
        atomic_write(directory / META_FILE, json.dumps(meta, indent=2) + "\n")
        return directory

    @staticmethod
    def file_in(directory: str | Path) -> Path:
        """The main file of a tokenizer saved in ``directory``."""
        return Path(directory) / TOKENIZER_FILE

    @staticmethod
    def saved_in(directory: str | Path) -> bool:
        """Whether ``directory`` holds a saved tokenizer."""
        return CodeTokenizer.file_in(directory).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> CodeTokenizer:
        directory = Path(directory)
        path = directory / TOKENIZER_FILE if directory.is_dir() else directory
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}")
        meta_path = path.parent / META_FILE
        num = DEFAULT_SENTINELS
        if not meta_path.is_file() and (path.parent / "tokenizer_config.json").is_file():
            return HFTokenizer.from_checkpoint(path.parent)  # a checkpoint folder (e.g. CodeT5's)
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("kind") == "hf":  # an imported checkpoint's own tokenizer (nl2code hf import)
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

    def vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included: two tokenizers with equal vocabularies encode alike."""
        return self._tok.get_vocab(with_added_tokens=True)

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


# -- a checkpoint's own tokenizer (nl2code hf import; CodeFusion's encoder_init) -----------------------
COPIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
FIM_STYLES = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    ("▁<PRE>", "▁<SUF>", "▁<MID>"),
    ("<PRE>", "<SUF>", "<MID>"),
)


class TokenizerError(ValueError):
    """A checkpoint tokenizer that cannot serve nl2code; the message names the file."""


def _token_text(value: Any) -> str | None:
    """``tokenizer_config.json`` writes special tokens as strings or as AddedToken dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def resolve_meta(hf_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The control ids of the tokenizer in ``hf_dir`` (see the module doc); ``config`` is config.json."""
    tok = Tokenizer.from_file(str(hf_dir / TOKENIZER_FILE))
    tcfg, gen = _json(hf_dir / "tokenizer_config.json"), _json(hf_dir / "generation_config.json")

    def id_of(key: str) -> int | None:
        text = _token_text(tcfg.get(key))
        return tok.token_to_id(text) if text is not None else None

    def first(*values: Any) -> int | None:
        for v in values:
            if isinstance(v, list):
                v = v[0] if v else None
            if isinstance(v, int):
                return v
        return None

    eos = first(id_of("eos_token"), gen.get("eos_token_id"), config.get("eos_token_id"))
    if eos is None:
        raise TokenizerError(f"{hf_dir}: no eos token in tokenizer_config.json, generation_config.json or config.json")
    stop = gen.get("eos_token_id", config.get("eos_token_id", eos))
    stop_ids = sorted({eos, *(stop if isinstance(stop, list) else [stop] if isinstance(stop, int) else [])})
    bos = first(id_of("bos_token"), gen.get("bos_token_id"), config.get("bos_token_id"))
    pad = first(id_of("pad_token"), gen.get("pad_token_id"), config.get("pad_token_id"), eos)
    meta: dict[str, Any] = {
        "kind": "hf",
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "eos": eos,
        "stop_ids": stop_ids,
        "bos": bos,
        "add_bos": bool(tcfg.get("add_bos_token", False)) and bos is not None,
        "pad": pad,
        "infill": None,
        "fim": None,
        "num_sentinels": 0,
    }
    for names in FIM_STYLES:
        ids = [tok.token_to_id(n) for n in names]
        if None not in ids:
            meta["fim"], meta["infill"] = ids, "psm"
            break
    for key, name in (("sep", "<sep>"), ("eom", "<eom>"), ("mask", "<mask>")):
        meta[key] = tok.token_to_id(name)
    while tok.token_to_id(f"<mask_{meta['num_sentinels'] + 1}>") is not None:
        meta["num_sentinels"] += 1
    if meta["infill"] is None and meta["num_sentinels"] and meta["sep"] is not None and meta["eom"] is not None:
        meta["infill"] = "codegen2"
    if meta["sep"] is None:
        newline = tok.encode("\n", add_special_tokens=False).ids
        meta["sep"] = newline[0] if len(newline) == 1 else eos
    return meta


def copy_checkpoint_tokenizer(hf_dir: str | Path, dest: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Copy the checkpoint's tokenizer files into ``dest`` (a run's ``tokenizer/``) with our metadata."""
    hf_dir, dest = Path(hf_dir), Path(dest)
    if not (hf_dir / TOKENIZER_FILE).is_file():
        raise TokenizerError(
            f"{hf_dir}: no tokenizer.json (a fast tokenizer file is needed; convert a slow "
            "one once with `AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)`)"
        )
    meta = resolve_meta(hf_dir, config)
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (hf_dir / name).is_file():
            shutil.copyfile(hf_dir / name, dest / name)
    (dest / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


class HFTokenizer(CodeTokenizer):
    """A checkpoint's own tokenizer (``tokenizer.json`` + ``tokenizer_config.json``) behind
    :class:`CodeTokenizer`'s interface, so every command runs on it unchanged.

    Encoding and decoding are CodeTokenizer's own; the control ids come from ``meta``, resolved once
    from the checkpoint's files (:func:`resolve_meta`) and saved as ``tokenizer_meta.json`` with
    ``kind: hf``, which :meth:`CodeTokenizer.load` recognises:

    * ``eos``, and every ``eos_token_id`` of ``generation_config.json`` as a stop token; ``bos``
      (prepended to prompts when ``tokenizer_config.json`` says ``add_bos_token``); ``pad`` (its
      own, else eos);
    * FIM: ``<fim_prefix>``-style (StarCoder), ``<|fim_prefix|>`` (Qwen2.5-Coder), DeepSeek-Coder's
      and CodeLlama's tokens give ``psm`` infilling; CodeGen2's ``<mask_1>``/``<sep>``/``<eom>``
      give ``codegen2`` infilling;
    * ``sep`` (between an utterance and its code in ``data.format: nl_code``): a ``<sep>`` token
      when the vocabulary has one, else the newline token, so a pair reads ``NL\\ncode``.

    Special tokens are only produced by id, never from text (as for our own tokenizer).
    """

    def __init__(self, tokenizer: Tokenizer, meta: dict[str, Any], directory: Path | None = None):
        self._tok = tokenizer
        self._special_ids: dict[str, int] = {}  # no nl2code specials: token_id looks up the vocabulary
        self._tok.encode_special_tokens = True
        self.meta = meta
        self.directory = directory
        self.num_sentinels = int(meta.get("num_sentinels", 0))
        added = [t for t in tokenizer.get_added_tokens_decoder().values() if t.special]
        self.special_ids = frozenset(tokenizer.token_to_id(t.content) for t in added)
        self.stop_ids = tuple(meta.get("stop_ids") or [meta["eos"]])
        self.infill_mode = meta.get("infill")
        self.bos_prefix = [meta["bos"]] if meta.get("add_bos") else []

    @classmethod
    def load(cls, directory: str | Path) -> HFTokenizer:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        return cls(Tokenizer.from_file(str(directory / TOKENIZER_FILE)), meta, directory)

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> HFTokenizer:
        """The tokenizer of a checkpoint folder, control ids resolved as ``copy_checkpoint_tokenizer`` does."""
        folder = Path(folder)
        meta = resolve_meta(folder, _json(folder / "config.json"))
        return cls(Tokenizer.from_file(str(folder / TOKENIZER_FILE)), meta, folder)

    def save(self, directory: str | Path) -> Path:
        """Copy the tokenizer files (and our metadata) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.directory is not None and self.directory.resolve() != directory.resolve():
            for name in COPIED:
                if (self.directory / name).is_file():
                    shutil.copyfile(self.directory / name, directory / name)
        else:
            self._tok.save(str(directory / TOKENIZER_FILE))
        (directory / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n", encoding="utf-8")
        return directory

    def _need(self, key: str, what: str) -> int:
        value = self.meta.get(key)
        if value is None:
            raise TokenizerError(f"this checkpoint's tokenizer has no {what} token")
        return int(value)

    def sentinel_id(self, i: int) -> int:
        if not 1 <= i <= self.num_sentinels:
            raise TokenizerError(f"this checkpoint's tokenizer has no <mask_{i}> sentinel")
        return self.token_id(f"<mask_{i}>")

    def _fim(self, i: int) -> int:
        if not self.meta.get("fim"):
            raise TokenizerError("this checkpoint's tokenizer has no fill-in-the-middle tokens")
        return int(self.meta["fim"][i])

    pad_id = property(lambda self: int(self.meta["pad"]))
    eos_id = property(lambda self: int(self.meta["eos"]))
    sep_id = property(lambda self: int(self.meta["sep"]))
    eom_id = property(lambda self: self._need("eom", "<eom>"))
    mask_id = property(lambda self: self._need("mask", "<mask>"))
    fim_prefix_id = property(lambda self: self._fim(0))
    fim_suffix_id = property(lambda self: self._fim(1))
    fim_middle_id = property(lambda self: self._fim(2))
