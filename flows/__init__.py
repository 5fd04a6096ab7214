"""Prefect flows: campaign -> recipient -> wav2lip (on the GPU pool). They only wire tasks."""
