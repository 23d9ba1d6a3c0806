#!/usr/bin/env bash
# Installs the npm test tools pinned in package.json into tests/tools/
# node_modules (ignored by git), only when they are missing. No lockfile is
# kept: versions are pinned exactly in package.json.
set -euo pipefail
cd "$(dirname "$0")"
# Both s3rver packages claim the bin name s3rver (and @20minutes/s3rver's
# bin file is missing), so no .bin/s3rver exists: check the packages.
if [ -f node_modules/s3rver/bin/s3rver.js ] && [ -d node_modules/@cdktf/hcl2json ] &&
	[ -f node_modules/@20minutes/s3rver/lib/cli.js ]; then
	exit 0
fi
npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
