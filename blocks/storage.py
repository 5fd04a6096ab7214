"""Where a deployed loom keeps its files and Prefect its task results.

Two choices, one block each:
- ``LoomStorage``: the engine's home (``LOOM_HOME``) — a local folder on a laptop, ``gs://bucket/prefix``
  in production, shared by CPU and GPU workers.
- prefect-gcp ``GcsBucket``: Prefect's result storage for cached tasks (prepare, speech) in
  production. Workers pick it up through ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=gcs-bucket/<name>``
  (set in the pool templates under ``deployments/``); locally results stay in ``$PREFECT_HOME/storage``.

``python -m blocks.storage --home gs://B/loom --bucket B`` saves both (``infra/gcp-setup.sh`` runs it).
"""

from __future__ import annotations

import argparse
import os

from prefect.blocks.core import Block
from prefect_gcp import GcpCredentials, GcsBucket
from pydantic import Field

from loom.settings import configure

STORAGE_BLOCK_ENV = "LOOM_STORAGE_BLOCK"
DEFAULT_STORAGE_BLOCK = "loom-storage"
DEFAULT_RESULTS_BLOCK = "loom-results"


class LoomStorage(Block):
    """The engine's home for templates, prepared templates, speech cache and outputs."""

    _block_type_name = "Loom Storage"
    _description = "Where better-loom keeps templates, prepared templates, caches and videos (a folder or gs://)."

    home: str = Field(description="A local folder, or gs://bucket/prefix shared by every worker.")

    def apply(self) -> str:
        """Make this the engine's home in this process (over ``LOOM_HOME``; the environment is not touched)."""

        configure(home=self.home)
        return self.home


def apply_storage_block() -> bool:
    """In a deployed run, load the block named by ``LOOM_STORAGE_BLOCK`` (if set) and use its home."""
    name = os.environ.get(STORAGE_BLOCK_ENV)
    if not name:
        return False
    LoomStorage.load(name).apply()
    return True


def gcs_result_storage(bucket: str, folder: str = "prefect-results", credentials: GcpCredentials | None = None) -> GcsBucket:
    """A GcsBucket block for Prefect's persisted task results (cache entries)."""
    return GcsBucket(bucket=bucket, bucket_folder=folder, gcp_credentials=credentials or GcpCredentials())


def save_production_blocks(home: str, bucket: str, folder: str = "prefect-results", overwrite: bool = True) -> dict[str, str]:
    """Save ``loom-storage`` and the ``loom-results`` GcsBucket; returns their slugs."""
    LoomStorage(home=home).save(DEFAULT_STORAGE_BLOCK, overwrite=overwrite)
    gcs_result_storage(bucket, folder).save(DEFAULT_RESULTS_BLOCK, overwrite=overwrite)
    return {"storage": f"loom-storage/{DEFAULT_STORAGE_BLOCK}", "results": f"gcs-bucket/{DEFAULT_RESULTS_BLOCK}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Save the storage blocks of a production deployment.")
    parser.add_argument("--home", required=True, help="gs://bucket/prefix for LOOM_HOME")
    parser.add_argument("--bucket", required=True, help="bucket for Prefect's task results")
    parser.add_argument("--folder", default="prefect-results")
    args = parser.parse_args(argv)
    for kind, slug in save_production_blocks(args.home, args.bucket, args.folder).items():
        print(f"{kind}: {slug}")


if __name__ == "__main__":
    main()
