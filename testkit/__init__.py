"""What tests and benchmarks share: fake ElevenLabs and Sync Labs servers speaking the real
request shapes, a webhook receiver, and media made on the fly. Not installed with the product;
importable from the repository root (pytest and the benchmarks put it on the path)."""
