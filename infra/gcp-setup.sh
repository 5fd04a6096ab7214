#!/usr/bin/env bash
# One-time GCP set-up for better-loom: bucket, service account, Artifact Registry, work pools, blocks.
#
#   PROJECT=my-project REGION=us-central1 BUCKET=my-loom-bucket PREFECT_API_URL=... \
#     infra/gcp-setup.sh [--gpu-backend cloud-run|vertex] [--dry-run]
#
# Safe to re-run: every step checks before it creates. --dry-run prints the commands instead.
# LOOM_TTS_CONCURRENCY (ElevenLabs), LOOM_SYNCLABS_CONCURRENCY and LOOM_GPU_LIPSYNC_CONCURRENCY size
# the providers' global concurrency limits (defaults 3, 3, 1).
set -euo pipefail

PROJECT="${PROJECT:?set PROJECT to the GCP project id}"
REGION="${REGION:-us-central1}"
BUCKET="${BUCKET:?set BUCKET to the bucket name (without gs://)}"
REPOSITORY="${REPOSITORY:-loom}"
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-loom-runner}"
GPU_BACKEND="cloud-run"
DRY_RUN=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpu-backend) GPU_BACKEND="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$GPU_BACKEND" in
  cloud-run|vertex) ;;
  *) echo "--gpu-backend must be cloud-run or vertex, not $GPU_BACKEND" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SA_EMAIL="${SERVICE_ACCOUNT}@${PROJECT}.iam.gserviceaccount.com"
IMAGE_ROOT="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}"

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+ %q' "$1"; shift; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

exists() {  # exists CMD...: true when the describe command succeeds (never in a dry run)
  [[ "$DRY_RUN" == 1 ]] && return 1
  "$@" >/dev/null 2>&1
}

echo "== APIs"
run gcloud services enable run.googleapis.com artifactregistry.googleapis.com cloudbuild.googleapis.com \
  storage.googleapis.com iam.googleapis.com aiplatform.googleapis.com secretmanager.googleapis.com --project "$PROJECT"

echo "== bucket gs://$BUCKET"
if ! exists gcloud storage buckets describe "gs://$BUCKET" --project "$PROJECT"; then
  run gcloud storage buckets create "gs://$BUCKET" --project "$PROJECT" --location "$REGION" --uniform-bucket-level-access
fi

echo "== service account $SA_EMAIL"
if ! exists gcloud iam service-accounts describe "$SA_EMAIL" --project "$PROJECT"; then
  run gcloud iam service-accounts create "$SERVICE_ACCOUNT" --project "$PROJECT" --display-name "better-loom runs"
fi
for role in roles/run.developer roles/iam.serviceAccountUser roles/artifactregistry.reader \
            roles/aiplatform.user roles/logging.logWriter roles/secretmanager.secretAccessor; do
  run gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$SA_EMAIL" --role "$role" --condition None --quiet
done
run gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --member "serviceAccount:$SA_EMAIL" --role roles/storage.objectAdmin

echo "== Artifact Registry $REPOSITORY"
if ! exists gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" --project "$PROJECT"; then
  run gcloud artifacts repositories create "$REPOSITORY" --repository-format docker --location "$REGION" --project "$PROJECT"
fi

echo "== work pools (Prefect at ${PREFECT_API_URL:-the active profile})"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# Fill the project-specific defaults into the pool templates kept in deployments/.
render() {  # render TEMPLATE OUT
  sed -e "s#REGION-docker.pkg.dev/PROJECT/loom#${IMAGE_ROOT}#g" \
      -e "s#loom-runner@PROJECT.iam.gserviceaccount.com#${SA_EMAIL}#g" \
      -e "s#\"us-central1\"#\"${REGION}\"#g" "$1" > "$2"
}
render "$ROOT/deployments/cloud-run-v2-cpu.json" "$TMP/cpu.json"
run prefect work-pool create cpu --type cloud-run-v2 --base-job-template "$TMP/cpu.json" --overwrite
if [[ "$GPU_BACKEND" == "vertex" ]]; then
  render "$ROOT/deployments/vertex-ai-gpu.json" "$TMP/gpu.json"
  run prefect work-pool create gpu --type vertex-ai --base-job-template "$TMP/gpu.json" --overwrite
else
  render "$ROOT/deployments/cloud-run-v2-gpu.json" "$TMP/gpu.json"
  run prefect work-pool create gpu --type cloud-run-v2 --base-job-template "$TMP/gpu.json" --overwrite
fi

echo "== provider limits"
# Global concurrency limits every run on every worker takes its provider slots from: size them
# to the accounts' plans (ElevenLabs: Free 2, Starter 3, Creator 5, Pro 10 concurrent requests).
provider_limit() {  # provider_limit NAME SIZE: create, or resize an existing one
  if [[ "$DRY_RUN" == 0 ]] && prefect gcl inspect "$1" >/dev/null 2>&1; then
    run prefect gcl update "$1" --limit "$2"
  else
    run prefect gcl create "$1" --limit "$2"
  fi
}
provider_limit elevenlabs "${LOOM_TTS_CONCURRENCY:-3}"
provider_limit synclabs "${LOOM_SYNCLABS_CONCURRENCY:-3}"
provider_limit gpu-lipsync "${LOOM_GPU_LIPSYNC_CONCURRENCY:-1}"

echo "== blocks"
run prefect block register -m blocks
run python -m blocks.storage --home "gs://${BUCKET}/loom" --bucket "$BUCKET"

echo "done: build and deploy with"
echo "  gcloud builds submit --config infra/cloudbuild.yaml --substitutions=_REGION=${REGION},_BUCKET=${BUCKET},_PREFECT_API_URL=\$PREFECT_API_URL"
