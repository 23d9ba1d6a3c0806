// tf-args.js FILE.tf... - prints "KIND.TYPE ARG.PATH" for every argument a
// Terraform module sets on its resources and data sources, parsed with
// HashiCorp's HCL parser (@cdktf/hcl2json). Nested blocks and object
// values give dotted paths (boot_disk.managed_disk.spec.type); lists of
// objects are walked element by element. Meta-arguments are left out, and
// map-typed arguments (tags, labels...) are not descended into: their keys
// are data. Used by tests/integration/provider_args.sh.
const fs = require("fs");
const path = require("path");
const { parse } = require(path.join(__dirname, "node_modules/@cdktf/hcl2json"));

const META = new Set(["depends_on", "count", "for_each", "provider", "lifecycle", "provisioner", "connection"]);
const MAPS = new Set(["tags", "labels", "volume_tags", "default_tags"]);

function walk(prefix, v, out) {
	if (Array.isArray(v)) {
		for (const e of v) walk(prefix, e, out);
		return;
	}
	if (v === null || typeof v !== "object") {
		out.add(prefix);
		return;
	}
	const keys = Object.keys(v);
	if (keys.length === 0) out.add(prefix);
	for (const k of keys) {
		const p = prefix ? prefix + "." + k : k;
		if (!prefix && META.has(k)) continue;
		if (MAPS.has(k)) out.add(p);
		else walk(p, v[k], out);
	}
}

(async () => {
	const out = new Set();
	for (const f of process.argv.slice(2)) {
		const j = await parse(f, fs.readFileSync(f, "utf8"));
		for (const [kind, tag] of [["resource", "resource"], ["data", "data"]]) {
			for (const [type, byName] of Object.entries(j[kind] || {})) {
				for (const bodies of Object.values(byName)) {
					for (const body of bodies) {
						const args = new Set();
						walk("", body, args);
						for (const a of args) out.add(`${tag}.${type} ${a}`);
					}
				}
			}
		}
	}
	process.stdout.write([...out].sort().join("\n") + "\n");
})().catch((e) => {
	process.stderr.write(String(e) + "\n");
	process.exit(1);
});
