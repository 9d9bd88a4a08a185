#!/usr/bin/env bash
# The release path (docs/release.md), run for real against a registry on loopback:
#   scripts/release.sh --local <out dir>
# builds the image from the Dockerfile (version and commit stamped), starts an OCI registry on
# 127.0.0.1 (crane's, built by scripts/provision.sh crane), pushes the image and reads back its digest,
# lists its packages into an SPDX SBOM with syft from the pushed digest, packages the chart as an OCI
# artifact (helm package) and pushes it (helm push, which prints its digest), then pulls it back and
# compares it byte for byte with what it pushed. It writes <out dir>/release.json (what a release
# publishes: references by digest) and the artifacts beside it. Only --local runs here: a real release
# runs docs/release.md's commands against your registry, with BuildKit for multi-arch images and
# provenance.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
eval "$("$here/scripts/provision.sh" env)"
log() { echo "release: $*" >&2; }

mode=${1:?usage: scripts/release.sh --local <out dir>}
out=${2:?usage: scripts/release.sh --local <out dir>}
[ "$mode" = --local ] || { log "only --local runs here (docs/release.md has the real registry's commands)"; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(node -p "require('$here/package.json').version")
chart_version=$(sed -n 's/^version: *//p' "$here/charts/sandbox-extproc/Chart.yaml")
app_version=$(sed -n "s/^appVersion: *'\{0,1\}\([^']*\)'\{0,1\}$/\1/p" "$here/charts/sandbox-extproc/Chart.yaml")
[ "$version" = "$app_version" ] || { log "package.json says $version, the chart's appVersion $app_version: bump both"; exit 1; }
commit=$(git -C "$here" rev-parse --short=12 HEAD)
image=sandbox-extproc:$version

log "building $image (commit $commit)"
DOCKER_BUILDKIT=0 docker build --quiet --build-arg "COMMIT=$commit" --build-arg "VERSION=$version" --tag "$image" "$here" >/dev/null
docker run --rm --read-only "$image" --version | grep -qx "sandbox-extproc $version (commit $commit, node .*)" ||
  { log "the image does not report version $version and commit $commit"; exit 1; }

# A registry on a loopback port it picks, for this run only (its storage in $out/registry); ready when it
# logs "serving on port N".
rm -rf "$out/registry" && mkdir "$out/registry"
: >"$out/registry.log"
"$SBX_CRANE" registry serve --address 127.0.0.1:0 --disk "$out/registry" >"$out/registry.log" 2>&1 &
registry_pid=$!
trap 'kill "$registry_pid" 2>/dev/null || true' EXIT
line=$(timeout 30 grep -m1 'serving on port' <(tail -n +1 -F --pid="$registry_pid" "$out/registry.log" 2>/dev/null)) ||
  { log "the registry did not start: $(cat "$out/registry.log")"; exit 1; }
registry=127.0.0.1:${line##* }

log "pushing $registry/sandbox-extproc:$version"
docker save --output "$out/image.tar" "$image"
"$SBX_CRANE" push --insecure "$out/image.tar" "$registry/sandbox-extproc:$version" >/dev/null
rm "$out/image.tar"
digest=$("$SBX_CRANE" digest --insecure "$registry/sandbox-extproc:$version")

log "SBOM of $registry/sandbox-extproc@$digest (syft, SPDX JSON)"
SYFT_CHECK_FOR_APP_UPDATE=false SYFT_REGISTRY_INSECURE_USE_HTTP=true \
  "$SBX_SYFT" scan "registry:$registry/sandbox-extproc@$digest" --quiet --output "spdx-json=$out/sandbox-extproc-$version.spdx.json"

log "chart: helm package, helm push oci://$registry/charts"
helm package "$here/charts/sandbox-extproc" --destination "$out" >/dev/null
push=$(helm push "$out/sandbox-extproc-$chart_version.tgz" "oci://$registry/charts" --plain-http 2>&1)
chart_digest=$(printf '%s\n' "$push" | sed -n 's/^Digest: *//p')
[ -n "$chart_digest" ] || { log "helm push printed no digest: $push"; exit 1; }
rm -rf "$out/pulled" && mkdir "$out/pulled"
helm pull "oci://$registry/charts/sandbox-extproc" --version "$chart_version" --plain-http --destination "$out/pulled" >/dev/null
cmp -s "$out/pulled/sandbox-extproc-$chart_version.tgz" "$out/sandbox-extproc-$chart_version.tgz" ||
  { log "the chart pulled back differs from the one pushed"; exit 1; }

cat >"$out/release.json" <<EOF
{
  "version": "$version",
  "commit": "$commit",
  "image": "$registry/sandbox-extproc@$digest",
  "sbom": "sandbox-extproc-$version.spdx.json",
  "chart": "oci://$registry/charts/sandbox-extproc:$chart_version@$chart_digest"
}
EOF
log "done: $(tr -d '\n ' <"$out/release.json")"
