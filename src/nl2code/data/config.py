"""What a run reads and how a record becomes tokens: the ``data`` and ``tokenizer`` sections of a run config.

They live in the data layer so that ``nl2code.data`` needs nothing from training; ``nl2code.train.config``
composes them into a :class:`~nl2code.train.config.RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nl2code.config import option as _f


@dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how a record becomes one token sequence."""

    source: str = _f("pysource", "data source name (see `nl2code data stats --help`)")
    path: str | None = _f(None, "source file/folder, relative to the working directory (null = default)")
    options: dict[str, Any] = _f({}, "keyword options of the source loader, e.g. {max_functions: 2000}")
    split: str | None = _f("train", "records of this split are trained on (null = all records)")
    eval_split: str | None = _f(None, "split to evaluate on; null = hold out eval_fraction of `split`")
    eval_fraction: float = _f(0.05, "fraction held out (by a hash of task_id) when eval_split is null")
    format: Literal["nl_code", "code", "code_nl", "code_cpd"] = _f(
        "nl_code",
        "nl_code: 'NL <sep> code <eos>' | code: 'code <eos>' | code_nl: 'code <eos>' + the NL apart "
        "(CodeFusion) | code_cpd: 'code <eos>' + identifier/keyword groups (CodeFusion CPD)",
    )
    loss_on: Literal["code", "all"] = _f("code", "train on the code tokens only, or on every token")
    max_len: int = _f(256, "tokens per sequence (longer examples are cut or dropped, see overlong)")
    overlong: Literal["truncate", "drop"] = _f("truncate", "what to do with examples longer than max_len")
    packing: bool = _f(False, "concatenate examples into full max_len rows instead of padding")
    shuffle: bool = _f(True, "reshuffle the training examples every epoch (seeded)")
    max_examples: int | None = _f(None, "use at most this many training examples (null = all)")
    copy_augment: int = _f(
        0,
        "add N variants of each training pair whose values shared by utterance and code are replaced on "
        "both sides (numbers by random ones of the same shape, words by another pair's shared word; "
        "nl2code.data.augment): the model must copy them; 0 = off",
    )

    def __post_init__(self) -> None:
        if self.max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {self.max_len}")
        if self.copy_augment < 0:
            raise ValueError(f"copy_augment must be >= 0, got {self.copy_augment}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_examples is not None and self.max_examples <= 0:
            raise ValueError("max_examples must be positive or null")


@dataclass(frozen=True)
class TokenizerConfig:
    """Which tokenizer the run uses, or how to train one into ``run_dir/tokenizer``."""

    path: str | None = _f(None, "saved tokenizer directory; null = train one on the training data")
    vocab_size: int = _f(8192, "vocabulary size when training a tokenizer")
    min_frequency: int = _f(2, "minimum pair frequency when training a tokenizer")
    split_spaces: bool = _f(
        False,
        "whitespace characters are tokens of their own: a word is one token after a space or a bracket "
        "(lets a model copy values from the utterance)",
    )


__all__ = ["DataConfig", "TokenizerConfig"]
