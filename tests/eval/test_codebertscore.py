"""CodeBERTScore algorithm with a tiny randomly initialised local BERT (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="CodeBERTScore needs the [hf] extra (transformers)")

from nl2code.eval.metrics.codebertscore import CodeBertScorer, best_of_k  # noqa: E402

SPECIAL = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
VOCAB = [
    *SPECIAL.values(),
    *"abcdefghijklmnopqrstuvwxyz0123456789()[]=+-.,:_",
    "print",
    "def",
    "return",
    "import",
    "os",
]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    d = tmp_path_factory.mktemp("tiny_bert")
    # a word-piece tokenizer built locally (works the same with transformers 4.x and 5.x)
    core = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    transformers.PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL).save_pretrained(d)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=32,
    )  # fmt: skip
    transformers.BertModel(config).save_pretrained(d)
    return d


def test_identical_strings_score_one(encoder_dir: Path):
    scorer = CodeBertScorer(encoder_dir)
    for code in ["print(x)", "def f(a): return a + 1", "x = y + 1 " * 20]:  # the last needs windows
        s = scorer.score_one(code, code)
        assert (s.precision, s.recall, s.f1, s.f3) == pytest.approx((1.0, 1.0, 1.0, 1.0), abs=1e-5)
    assert scorer.score_one("print(x)", "print(x)", source="print the value").f1 == pytest.approx(1.0, abs=1e-5)


def test_different_strings_and_formulas(encoder_dir: Path):
    scorer = CodeBertScorer(encoder_dir, layer=1)
    s = scorer.score_one("print(x)", "import os")
    assert s.f1 < 0.999
    p, r = s.precision, s.recall
    assert s.f1 == pytest.approx(2 * p * r / (p + r))
    assert s.f3 == pytest.approx(10 * p * r / (9 * p + r))
    scores = scorer.score(["import os", "print(x)"], ["print(x)", "print(x)"])
    assert best_of_k(scores, 1) < 0.999 and best_of_k(scores, 2) == pytest.approx(1.0, abs=1e-5)
    assert best_of_k([], 3) == 0.0


def test_punctuation_only_input_and_missing_dir(encoder_dir: Path, tmp_path: Path):
    scorer = CodeBertScorer(encoder_dir)
    assert scorer.tokenizer.convert_ids_to_tokens(scorer._ids("print(x)")) == ["print", "(", "x", ")"]
    assert scorer.score_one("()", "print(x)").f1 == 0.0  # nothing left to match after masking
    with pytest.raises(FileNotFoundError):
        CodeBertScorer(tmp_path)
