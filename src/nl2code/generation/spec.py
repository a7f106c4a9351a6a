"""How a trained model is prompted: saved with every finished run, so inference never re-reads the stages.

:func:`spec_from_config` derives the spec from a run config (the last stage decides); training
saves its result in the run directory and :func:`load_spec` reads it back, falling back to
:func:`spec_from_config` for runs written before runs saved one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nl2code.config import from_dict, to_dict
from nl2code.data.config import DataConfig
from nl2code.objectives.autoregressive import CodeGen2MixtureConfig
from nl2code.rundir import RunDir
from nl2code.train.config import RunConfig, resolve_stages

PromptFormat = Literal["nl", "code"]
InfillMode = Literal["codegen2", "psm", "spm"]


@dataclass(frozen=True)
class GenerationSpec:
    """What a run was trained to read.

    Attributes:
        prompt_format: ``nl``: a prompt is an utterance (``NL <sep>`` is continued); ``code``: code to continue.
        infill_mode: ``codegen2`` (span corruption), ``psm``/``spm`` (FIM), or None (not trained to infill).
        conditional: whether the model reads the prompt at all (CodeFusion's unconditional and CPD
            pre-training stages do not).
        retrieval_k: retrieval-augmented prompts: the commands of this many nearest training utterances.
        retrieval_data: the data section whose training records retrieval reads (None without retrieval).
        guidable: the model also learned the empty request (CodeFusion's ``objective.cond_dropout``), so
            classifier-free guidance can contrast against it.
    """

    prompt_format: PromptFormat = "nl"
    infill_mode: InfillMode | None = None
    conditional: bool = True
    retrieval_k: int = 0
    retrieval_data: DataConfig | None = None
    guidable: bool = False


def infill_mode_of(config: RunConfig) -> InfillMode | None:
    """How a run was trained to infill: ``codegen2`` (span corruption), ``psm``/``spm`` (FIM), or None.

    Read from the objective of the run's last stage that used ``codegen2_mixture``.
    """
    for stage in reversed(resolve_stages(config)):
        obj = stage.objective
        if isinstance(obj, CodeGen2MixtureConfig):
            if obj.span_rate > 0:
                return "codegen2"
            if obj.fim_rate > 0:
                return "spm" if obj.spm_rate > 0.5 else "psm"
    return None


def spec_from_config(config: RunConfig) -> GenerationSpec:
    """The spec of a run trained with ``config``: its last stage's data format and objective."""
    last = resolve_stages(config)[-1]
    retrieval_k = int(getattr(last.objective, "retrieval_k", 0) or 0)
    return GenerationSpec(
        prompt_format="nl" if last.data.format == "nl_code" else "code",
        infill_mode=infill_mode_of(config),
        conditional=getattr(last.objective, "task", "finetune") == "finetune",
        retrieval_k=retrieval_k,
        retrieval_data=last.data if retrieval_k else None,
        guidable=bool(getattr(last.objective, "cond_dropout", 0.0)),
    )


def save_spec(run_dir: RunDir, spec: GenerationSpec) -> None:
    run_dir.save_generation_spec(to_dict(spec))


def load_spec(run_dir: RunDir, config: RunConfig) -> GenerationSpec:
    """The run's saved spec, or the one derived from ``config`` for runs that have none."""
    saved: dict[str, Any] | None = run_dir.load_generation_spec()
    if saved is None:
        return spec_from_config(config)
    return from_dict(GenerationSpec, saved, str(run_dir.generation_file))


__all__ = [
    "GenerationSpec",
    "InfillMode",
    "PromptFormat",
    "infill_mode_of",
    "load_spec",
    "save_spec",
    "spec_from_config",
]
