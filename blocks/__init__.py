"""Prefect blocks: credentials and model/storage configuration (``prefect block register -m blocks``).

Registration finds every Block class in this module's namespace, so each one is imported here.
"""

from blocks.storage import LoomStorage

__all__ = ["LoomStorage"]
