"""Training: the one loop (``loop.train``), its config tree, optimizer/schedule/EMA, checkpoints,
logging and data-parallel plumbing. ``nl2code train`` (``nl2code.commands.train``) wires them up."""
