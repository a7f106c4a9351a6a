"""CLI subcommands; see nl2code.cli."""
