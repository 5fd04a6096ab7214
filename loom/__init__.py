"""better-loom engine: personalized videos made by editing one real recording.

Plain Python; never imports Prefect, ``flows``, ``tasks`` or ``app``.
"""

__version__ = "0.1.0"
