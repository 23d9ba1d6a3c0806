#!/usr/bin/env bash
# make-registry.sh OUT_DIR SHARD_MIB BUILD_DIR
#
# Builds the demo model registry that runbooks/tinylm-local.json recreates
# tinylm from: a git repository at OUT_DIR, made with the real git and git lfs
# CLIs, holding models/tinylm/{manifest.json, tinylm.model,
# weights-synthetic-0000K-of-0000N.bin} at the tag tinylm/1.0.0, the large
# files as LFS pointers with their objects in OUT_DIR/.git/lfs/objects/.
#
# Like a real model, the weights come in several shards: SHARD_MIB in all,
# cut into N = min(4, SHARD_MIB) shards (1 for 0 MiB) of whole MiBs, the
# last taking the remainder, so a restore verifies them in parallel.
#
# The build (BUILD_DIR) provides the trained model (tinylm.model) and the
# shard generator (runbooks/tinylm/tinylm-shard). Author, committer and dates
# are fixed, so the same inputs give the same commit on every machine. A rerun
# with the same inputs does nothing; otherwise the registry is rebuilt in
# OUT_DIR.tmp and renamed into place, so OUT_DIR never holds half a registry.
# Global and system git configuration are neither read nor written.
set -euo pipefail

prog=make-registry.sh
name=tinylm
version=1.0.0
shard_max=4
stamp_name=rehydra-demo.stamp
fixed_date="2025-01-01T00:00:00Z"

die() {
	echo "$prog: $*" >&2
	exit 1
}

[ $# -eq 3 ] || die "usage: $prog OUT_DIR SHARD_MIB BUILD_DIR"
if ! [[ "$2" =~ ^[0-9]{1,5}$ ]] || [ $((10#$2)) -gt 65536 ]; then
	die "SHARD_MIB must be 0..65536, not '$2'"
fi
command -v git >/dev/null || die "git is not installed: run .ci/install-deps"
git lfs version >/dev/null 2>&1 || die "git-lfs is not installed: run .ci/install-deps"

out=$(realpath -m -- "$1")
mib=$((10#$2))
build=$(realpath -- "$3") || die "build dir $3 does not exist: build first (make build)"
n_shards=$((mib < shard_max ? (mib > 0 ? mib : 1) : shard_max))
shard_mib=$((mib / n_shards))
shard_names=()
for k in $(seq 1 "$n_shards"); do
	shard_names+=("$(printf 'weights-synthetic-%05d-of-%05d.bin' "$k" "$n_shards")")
done
model_src=$build/tinylm.model
shard_tool=$build/runbooks/tinylm/tinylm-shard
[ -f "$model_src" ] || die "$model_src is missing: build the tinylm target first"
[ -x "$shard_tool" ] || die "$shard_tool is missing: build the tinylm-shard target first"
case "$out" in
/ | "$HOME" | "$build") die "refusing to use $out as the registry directory" ;;
esac

# The stamp names every input, so "same stamp" means "same registry".
model_sha=$(sha256sum "$model_src" | cut -d' ' -f1)
model_size=$(stat -c %s "$model_src")
shard_id=$("$shard_tool" --id)
want_stamp="model $model_sha $model_size
shard $shard_id $mib in $n_shards
tag $name/$version"

# Every LFS object the tagged commit points to is in the local store.
objects_present() {
	local oid n=0
	while read -r oid; do
		[ -f "$1/.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid" ] || return 1
		n=$((n + 1))
	done < <(git -C "$1" lfs ls-files -l "$name/$version" 2>/dev/null | cut -d' ' -f1)
	[ "$n" -eq $((n_shards + 1)) ]
}

# LFS objects are content-addressed and never change: read-only, as git keeps
# its own objects, so a restore onto the same filesystem can hard-link them
# into the workspace instead of copying (rehydra still hashes them).
objects_readonly() {
	find "$1/.git/lfs/objects" -type f -perm /222 -exec chmod a-w {} +
}

if [ -e "$out" ]; then
	if [ -f "$out/.git/$stamp_name" ]; then
		if [ "$(cat "$out/.git/$stamp_name")" = "$want_stamp" ] &&
			git -C "$out" rev-parse -q --verify "refs/tags/$name/$version" >/dev/null &&
			objects_present "$out"; then
			objects_readonly "$out"
			commit=$(git -C "$out" rev-parse "$name/$version^{commit}")
			echo "$prog: $out is up to date ($name/$version at ${commit:0:12})"
			exit 0
		fi
	elif [ -n "$(ls -A -- "$out")" ]; then
		die "$out exists and was not made by $prog: remove it or pick another directory"
	fi
fi

tmp=$out.tmp
scratch=$(mktemp -d)
cleanup() {
	rm -rf -- "$scratch"
	[ -z "${tmp:-}" ] || rm -rf -- "$tmp"
}
trap cleanup EXIT
rm -rf -- "$tmp"
mkdir -p -- "$tmp"

# A private HOME and global config: never read or touch the user's.
export HOME=$scratch GIT_CONFIG_GLOBAL=$scratch/gitconfig GIT_CONFIG_NOSYSTEM=1
: >"$GIT_CONFIG_GLOBAL"
export GIT_AUTHOR_NAME=rehydra-demo GIT_AUTHOR_EMAIL=demo@rehydra.invalid
export GIT_COMMITTER_NAME=rehydra-demo GIT_COMMITTER_EMAIL=demo@rehydra.invalid
export GIT_AUTHOR_DATE=$fixed_date GIT_COMMITTER_DATE=$fixed_date
export GIT_TERMINAL_PROMPT=0
g() { git -C "$tmp" -c user.name=rehydra-demo -c user.email=demo@rehydra.invalid "$@"; }

g init -q -b main
g lfs install --local >/dev/null
# One pattern per call: given several, git lfs track writes them in no fixed
# order, and .gitattributes would then change the commit from run to run.
g lfs track '*.bin' >/dev/null
g lfs track '*.model' >/dev/null

dir=$tmp/models/$name
mkdir -p -- "$dir"
cp -- "$model_src" "$dir/tinylm.model"
shard_lines= shard_shas=()
for k in $(seq 0 $((n_shards - 1))); do
	f=${shard_names[$k]}
	this_mib=$((k == n_shards - 1 ? mib - k * shard_mib : shard_mib))
	"$shard_tool" "$this_mib" "$dir/$f" $((k * shard_mib))
	sha=$(sha256sum "$dir/$f" | cut -d' ' -f1)
	shard_shas+=("$sha")
	shard_lines+=",
    {\"path\": \"$f\", \"size\": $(stat -c %s "$dir/$f"), \"sha256\": \"$sha\", \"role\": \"weights\"}"
done

description="tinylm: a byte-level n-gram language model trained at build time on rehydra's"
description+=" own prose, with a synthetic weights shard standing in for a real model's weights"
cat >"$dir/manifest.json" <<EOF
{
  "rehydra_manifest": 1,
  "name": "$name",
  "version": "$version",
  "description": "$description",
  "license": "Apache-2.0",
  "serving": {"runtime": "tinylm", "min_gpu_memory_gb": 0, "accelerator": "cpu"},
  "export": {"eccn": "EAR99", "jurisdictions": ["*"]},
  "files": [
    {"path": "tinylm.model", "size": $model_size, "sha256": "$model_sha", "role": "model"}$shard_lines
  ]
}
EOF

g add .gitattributes models
g commit -q -m "$name $version"
g tag -a -m "$name $version" "$name/$version"

# The large files must be LFS pointers in the commit, their bytes in the store.
lfs_files=$(g lfs ls-files -n "$name/$version" | sort)
want_files=$(printf "models/$name/%s\n" tinylm.model "${shard_names[@]}" | sort)
[ "$lfs_files" = "$want_files" ] ||
	die "git lfs ls-files lists '$lfs_files', expected the model and the shards"
for f in tinylm.model "${shard_names[@]}"; do
	g cat-file -p "$name/$version:models/$name/$f" | head -n1 |
		grep -qx 'version https://git-lfs.github.com/spec/v1' ||
		die "models/$name/$f was committed as a plain blob, not an LFS pointer"
done
for oid in "$model_sha" "${shard_shas[@]}"; do
	[ -f "$tmp/.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid" ] ||
		die "LFS object $oid is missing from $tmp/.git/lfs/objects"
done

objects_readonly "$tmp"
printf '%s\n' "$want_stamp" >"$tmp/.git/$stamp_name"
commit=$(g rev-parse HEAD)
manifest_sha=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)

# Swap into place; the old registry, if any, goes only once the new one is whole.
if [ -e "$out" ]; then
	rm -rf -- "$out.old"
	mv -- "$out" "$out.old"
	mv -- "$tmp" "$out"
	rm -rf -- "$out.old"
else
	mkdir -p -- "$(dirname -- "$out")"
	mv -- "$tmp" "$out"
fi
tmp=
echo "$prog: built $out ($name/$version at ${commit:0:12}," \
	"manifest sha256 ${manifest_sha:0:12}, $mib MiB in $n_shards shards)"
