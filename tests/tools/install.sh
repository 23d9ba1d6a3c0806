#!/usr/bin/env bash
# Installs the npm test tools pinned in package.json into tests/tools/
# node_modules (ignored by git), only when they are missing. No lockfile is
# kept: versions are pinned exactly in package.json.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x node_modules/.bin/s3rver ] && [ -d node_modules/@cdktf/hcl2json ] &&
	[ -f node_modules/@20minutes/s3rver/lib/cli.js ]; then
	exit 0
fi
npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
