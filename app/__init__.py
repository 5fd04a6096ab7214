"""Entry points: the ``loom`` CLI and the jobs API."""
