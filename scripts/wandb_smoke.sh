#!/usr/bin/env bash
# Push one whole pipeline to Weights & Biases and check that every artifact and alias
# landed. Needs a W&B account: run `wandb login` (or export WANDB_API_KEY) first.
#
#   WANDB_PROJECT=trainflow-smoke [WANDB_ENTITY=my-team] scripts/wandb_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export WANDB_PROJECT=${WANDB_PROJECT:-trainflow-smoke}
export TRAINFLOW_HOME=${TRAINFLOW_HOME:-$(mktemp -d)}
export MLFLOW_TRACKING_URI=sqlite:///$TRAINFLOW_HOME/mlflow.db
export PATH="$PWD/$BIN:$PATH"

if [ -z "${WANDB_API_KEY:-}" ] && ! grep -q "api.wandb.ai" ~/.netrc 2>/dev/null; then
    echo "wandb_smoke: no W&B credentials: run 'wandb login' or set WANDB_API_KEY" >&2
    exit 2
fi

trainflow init
mlflow run . --env-manager local --experiment-name trainflow -P hydra_options="artifacts.backend=wandb"

check() {  # REF: the reference must resolve in the W&B project
    "$BIN/trainflow" --backend wandb --project "$WANDB_PROJECT" ${WANDB_ENTITY:+--entity "$WANDB_ENTITY"} \
        artifacts show "$1" > /dev/null && echo "ok  $1" || { echo "MISSING  $1" >&2; exit 1; }
}
for ref in raw_data:latest trainval_data.parquet:latest test_data.parquet:latest model_export:latest model_export:prod; do
    check "$ref"
done
"$BIN/trainflow" --backend wandb --project "$WANDB_PROJECT" ${WANDB_ENTITY:+--entity "$WANDB_ENTITY"} \
    artifacts lineage model_export:prod
echo "wandb_smoke: every artifact and alias landed in W&B project $WANDB_PROJECT"
