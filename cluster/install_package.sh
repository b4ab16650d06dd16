#!/usr/bin/env bash
# Install the stableface package, with the pinned versions of constraints.txt, into the current
# Python. One recipe for the image (cluster/Dockerfile) and the launcher (cluster/aws.yaml).
#
#   cluster/install_package.sh [REPO_DIR]
#
# TORCH_INDEX_URL picks the torch build: empty (default) = PyPI's Linux wheel, the CUDA 12 build
# for GPU nodes; https://download.pytorch.org/whl/cpu = the CPU build (what constraints.txt pins
# for development machines as torch==X+cpu). The torch version itself always comes from
# constraints.txt, so every node runs the same release as the tests.
set -euo pipefail

repo_dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
constraints="${repo_dir}/constraints.txt"
if [[ ! -f "${constraints}" || ! -f "${repo_dir}/pyproject.toml" ]]; then
    echo "install_package.sh: ${repo_dir} is not the stableface repository (no constraints.txt/pyproject.toml)" >&2
    exit 2
fi

torch_version="$(sed -n 's/^torch==\([0-9][0-9.]*\).*/\1/p' "${constraints}")"
if [[ -z "${torch_version}" ]]; then
    echo "install_package.sh: ${constraints} has no torch== pin" >&2
    exit 2
fi

# The +cpu local version in constraints.txt would force the CPU wheel; pin the bare version instead.
node_constraints="$(mktemp)"
trap 'rm -f "${node_constraints}"' EXIT
grep -v '^torch==' "${constraints}" > "${node_constraints}"

index_args=()
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    index_args=(--extra-index-url "${TORCH_INDEX_URL}")
fi

python -m pip install --no-cache-dir "${index_args[@]}" -c "${node_constraints}" \
    "torch==${torch_version}" "${repo_dir}"

# Fail the build or node set-up now rather than at the first job.
python -c "import ray, stableface, torch; print('stableface', stableface.__version__, 'ray', ray.__version__, 'torch', torch.__version__, 'cuda', torch.version.cuda)"
