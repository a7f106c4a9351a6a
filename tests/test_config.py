from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from nl2code import config as C


@dataclass
class Opt:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    name: Literal["adamw", "sgd"] = "adamw"


@C.register("test_model", "tiny")
@dataclass
class Tiny:
    width: int = 8
    tied: bool = True


@dataclass
class Root:
    steps: int = 10
    opt: Opt = field(default_factory=Opt)
    model: Any = field(default=None, metadata={"registry": "test_model"})
    tags: list[str] = field(default_factory=list)
    note: str | None = None


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_load_with_overrides(tmp_path):
    p = write(tmp_path, "steps: 5\nopt: {lr: 0.1}\nmodel: {kind: tiny, width: 4}\n")
    cfg = C.load(Root, p, ["opt.lr=3e-4", "model.tied=false", "tags=[a, b]", "opt.betas=[0.8, 0.9]"])
    assert cfg.steps == 5 and cfg.opt.lr == pytest.approx(3e-4)
    assert isinstance(cfg.model, Tiny) and cfg.model.width == 4 and cfg.model.tied is False
    assert cfg.tags == ["a", "b"] and cfg.opt.betas == (0.8, 0.9)


def test_int_widens_to_float(tmp_path):
    assert C.load(Root, write(tmp_path, "opt: {lr: 1}\n")).opt.lr == 1.0


@pytest.mark.parametrize(
    "text, match",
    [
        ("stepz: 3\n", "unknown key 'stepz'"),
        ("opt: {lrr: 3}\n", "unknown key 'opt.lrr'"),
        ("steps: three\n", "steps: expected an integer"),
        ("steps: 2.5\n", "steps: expected an integer"),
        ("opt: {name: adam}\n", "opt.name: expected one of"),
        ("model: {width: 3}\n", "'model' needs a 'kind'"),
        ("model: {kind: huge}\n", "unknown test_model kind 'huge'"),
        ("model: {kind: tiny, tied: 1}\n", "model.tied: expected true/false"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("steps: [1\n", "invalid YAML"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(C.ConfigError, match=match) as e:
        C.load(Root, p)
    assert str(p) in str(e.value)


def test_bad_override_names_key():
    with pytest.raises(C.ConfigError, match="opt.momentum"):
        C.load(Root, None, ["opt.momentum=0.9"])
    with pytest.raises(C.ConfigError, match="key=value"):
        C.load(Root, None, ["steps"])


def test_no_code_execution(tmp_path):
    p = write(tmp_path, "note: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(C.ConfigError):
        C.load(Root, p)


def test_save_roundtrip(tmp_path):
    cfg = C.load(Root, None, ["model={kind: tiny, width: 2}", "note=hi"])
    C.save(cfg, tmp_path / "resolved.yaml")
    again = C.load(Root, tmp_path / "resolved.yaml")
    assert again == cfg


def test_overrides_reach_a_stage_by_name_or_index_and_read_on_off_as_strings(tmp_path):
    from nl2code.train.config import describe_stages, load_run_config, shadowed_overrides

    path = "configs/smoke/codegen_stages.yaml"
    overrides = ["stages.finetune.train.max_steps=7", "stages[0].train.lr=0.01", "train.progress=off",
                 "train.lr=0.02", "data.options.language=python", "stages.pretrain.data.options={max_functions: 9}"]
    cfg, stages = load_run_config(path, overrides)
    pre, fine = stages
    assert (pre.train.lr, fine.train.max_steps, fine.train.lr) == (0.01, 7, 1.0e-3)  # finetune sets its own lr
    assert pre.train.progress == "off" and fine.train.progress == "off"
    assert pre.data.options == {"max_functions": 9, "language": "python"}  # options merge key by key
    assert fine.data.options == {"max_functions": 3000, "language": "python"}
    notes = shadowed_overrides(cfg, overrides)
    assert notes[-1] == ("train.lr=0.02 does not reach stage 'finetune', which sets train.lr itself "
                         "(use stages.finetune.train.lr=...)") and len(notes) == 2  # pretrain's lr is set above
    text = describe_stages(cfg, stages)
    assert "#   train.lr: 0.001   (stages.finetune.train)" in text and "#   train.max_steps: 150   (train)" in text
    with pytest.raises(C.ConfigError, match="no item named 'fine' \\(names: pretrain, finetune\\)"):
        load_run_config(path, ["stages.fine.train.max_steps=1"])
    with pytest.raises(C.ConfigError, match="index 5 is out of range"):
        load_run_config(path, ["stages.5.train.max_steps=1"])
    with pytest.raises(C.ConfigError, match="expected one of"):
        load_run_config(path, ["train.precision=off"])  # no string choice means off: still an error


def test_extends_merges_sections_into_the_base_and_replaces_lists(tmp_path):
    (tmp_path / "sub").mkdir()
    base = "steps: 5\nopt: {lr: 0.1, name: sgd}\nmodel: {kind: tiny, width: 4}\ntags: [a]\n"
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "sub" / "mid.yaml").write_text("extends: ../base.yaml\nopt: {lr: 0.2}\n")
    leaf = tmp_path / "sub" / "leaf.yaml"
    leaf.write_text("extends: mid.yaml  # relative to this file\nmodel: {tied: false}\ntags: [b, c]\n")
    cfg = C.load(Root, leaf, ["opt.betas=[0.8, 0.9]"])
    assert cfg == Root(steps=5, opt=Opt(lr=0.2, betas=(0.8, 0.9), name="sgd"), model=Tiny(4, False), tags=["b", "c"])
    assert "extends" not in C.read_yaml(leaf)


@pytest.mark.parametrize(
    "files, match",
    [
        ({"a.yaml": "extends: a.yaml\n"}, r"a cycle \(a.yaml -> a.yaml\)"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, r"a cycle \(a.yaml -> b.yaml -> a.yaml\)"),
        ({"a.yaml": "extends: gone.yaml\n"}, r"a.yaml: extends gone.yaml: no such file"),
        ({"a.yaml": "extends: [b.yaml]\n"}, r"a.yaml: extends: expected the path of a base config"),
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "stepz: 1\n"}, r"a.yaml: unknown key 'stepz'"),
    ],
)
def test_extends_errors_name_the_file(tmp_path, files, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(C.ConfigError, match=match):
        C.load(Root, tmp_path / "a.yaml")
