"""``nl2code demo``: the whole toolkit end to end on data every Python install has.

Mine docstring -> function pairs from the standard library, train a tokenizer, pre-train and
fine-tune a small CodeGen and a small CodeFusion, generate for held-out functions and HumanEval,
evaluate, and write an HTML report. Each step leaves its artifact and a marker in the run
directory, so a second run resumes where the first stopped.
"""

from nl2code.demo.pipeline import run_demo
from nl2code.demo.settings import DemoSettings

__all__ = ["DemoSettings", "run_demo"]
