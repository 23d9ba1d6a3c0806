#!/usr/bin/env node
// server.js - a small Git LFS server for tests: the batch API
// (docs/api/batch.md) and the basic transfer adapter
// (docs/api/basic-transfers.md), objects stored on disk. Real `git lfs push`
// uploads to it (which checks that it speaks the protocol), rehydra
// downloads from it. Node built-ins only (http, crypto, fs, path).
//
// usage: node server.js --dir DIR [--port N] [--token T]
//                       [--fail-batch N] [--fail-get N] [--fail-status 503]
//                       [--retry-after S] [--corrupt]
// Environment LFS_TOKEN, LFS_FAIL_BATCH, LFS_FAIL_GET, LFS_FAIL_STATUS,
// LFS_RETRY_AFTER, LFS_CORRUPT=1 set the same. Port 0 (the default) binds a
// free port; the bound port is the first line on stdout. Listens on
// 127.0.0.1 only.
//
// Routes (REPO is one or more path segments):
//   POST /REPO/info/lfs/objects/batch        batch API (download, upload)
//   GET  /REPO/info/lfs/objects/OID          download href
//   PUT  /REPO/info/lfs/objects/OID          upload href (hashed, verified)
//   POST /REPO/info/lfs/objects/OID/verify   verify action
//   POST /_control  {"fail_batch":N, "fail_get":N, "fail_status":S,
//                    "retry_after":S, "corrupt":bool, "token":T}
//   GET  /_stats    {"batch":N, "get":N, "put":N, "verify":N, "unauthorized":N}
// Auth (when a token is set): "Authorization: Bearer TOKEN" or Basic with
// TOKEN as the password, on every LFS route; anything else gets 401.
'use strict';

const http = require('http');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const MEDIA = 'application/vnd.git-lfs+json';

function parseArgs(argv) {
	const o = {
		dir: null,
		port: 0,
		token: process.env.LFS_TOKEN || '',
		failBatch: parseInt(process.env.LFS_FAIL_BATCH || '0', 10),
		failGet: parseInt(process.env.LFS_FAIL_GET || '0', 10),
		failStatus: parseInt(process.env.LFS_FAIL_STATUS || '503', 10),
		retryAfter: process.env.LFS_RETRY_AFTER || '',
		corrupt: process.env.LFS_CORRUPT === '1',
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
			return argv[++i];
		};
		if (a === '--dir') o.dir = next();
		else if (a === '--port') o.port = parseInt(next(), 10);
		else if (a === '--token') o.token = next();
		else if (a === '--fail-batch') o.failBatch = parseInt(next(), 10);
		else if (a === '--fail-get') o.failGet = parseInt(next(), 10);
		else if (a === '--fail-status') o.failStatus = parseInt(next(), 10);
		else if (a === '--retry-after') o.retryAfter = next();
		else if (a === '--corrupt') o.corrupt = true;
		else throw new Error(`unknown argument ${a}`);
	}
	if (!o.dir) throw new Error('--dir is required');
	return o;
}

let opts;
try {
	opts = parseArgs(process.argv.slice(2));
} catch (e) {
	process.stderr.write(`lfs-server: ${e.message}\n`);
	process.exit(2);
}
fs.mkdirSync(opts.dir, { recursive: true });
const stats = { batch: 0, get: 0, put: 0, verify: 0, unauthorized: 0 };

function log(msg) {
	process.stderr.write(`lfs-server: ${msg}\n`);
}

function sendJSON(res, status, obj, extra) {
	const body = JSON.stringify(obj);
	res.writeHead(status, Object.assign({
		'Content-Type': `${MEDIA}; charset=utf-8`,
		'Content-Length': Buffer.byteLength(body),
	}, extra || {}));
	res.end(body);
}

function readBody(req, limit) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let n = 0;
		req.on('data', (c) => {
			n += c.length;
			if (n > limit) {
				reject(new Error('request body too large'));
				req.destroy();
				return;
			}
			chunks.push(c);
		});
		req.on('end', () => resolve(Buffer.concat(chunks)));
		req.on('error', reject);
	});
}

function authorized(req) {
	if (!opts.token) return true;
	const h = req.headers.authorization || '';
	if (h === `Bearer ${opts.token}`) return true;
	if (h.startsWith('Basic ')) {
		const dec = Buffer.from(h.slice(6), 'base64').toString('utf8');
		const colon = dec.indexOf(':');
		if (colon >= 0 && dec.slice(colon + 1) === opts.token) return true;
	}
	return false;
}

function actionHeader() {
	return opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
}

const OID_RE = /^[0-9a-f]{64}$/;

function objectPath(repo, oid) {
	return path.join(opts.dir, repo, oid.slice(0, 2), oid.slice(2, 4), oid);
}

function objectSize(repo, oid) {
	try {
		const st = fs.statSync(objectPath(repo, oid));
		return st.isFile() ? st.size : -1;
	} catch (e) {
		return -1;
	}
}

function baseURL(req) {
	return `http://${req.headers.host}`;
}

function safeRepo(repo) {
	return repo.split('/').every((s) => /^[A-Za-z0-9._-]+$/.test(s) && s !== '.' && s !== '..');
}

async function handleBatch(req, res, repo) {
	stats.batch++;
	if (opts.failBatch > 0) {
		opts.failBatch--;
		const extra = opts.retryAfter !== '' ? { 'Retry-After': opts.retryAfter } : {};
		log(`batch: injected ${opts.failStatus}`);
		sendJSON(res, opts.failStatus, { message: 'injected failure, try again' }, extra);
		return;
	}
	const accept = req.headers.accept || '';
	if (!accept.includes(MEDIA)) {
		sendJSON(res, 406, { message: `Accept must be ${MEDIA}` });
		return;
	}
	const ctype = req.headers['content-type'] || '';
	if (!ctype.includes(MEDIA)) {
		sendJSON(res, 415, { message: `Content-Type must be ${MEDIA}` });
		return;
	}
	let body;
	try {
		body = JSON.parse((await readBody(req, 10 * 1024 * 1024)).toString('utf8'));
	} catch (e) {
		sendJSON(res, 422, { message: `malformed batch request: ${e.message}` });
		return;
	}
	if (!body || typeof body !== 'object' || !Array.isArray(body.objects) ||
	    (body.operation !== 'download' && body.operation !== 'upload')) {
		sendJSON(res, 422, { message: 'batch request needs operation and objects' });
		return;
	}
	if (body.hash_algo !== undefined && body.hash_algo !== 'sha256') {
		sendJSON(res, 409, { message: `unsupported hash algorithm ${body.hash_algo}` });
		return;
	}
	if (body.transfers !== undefined &&
	    (!Array.isArray(body.transfers) || !body.transfers.includes('basic'))) {
		// batch.md: fall back to basic when none of the client's is known.
		log('batch: client offered no basic transfer; answering basic');
	}
	const base = `${baseURL(req)}/${repo}/info/lfs/objects`;
	const objects = body.objects.map((o) => {
		if (!o || typeof o.oid !== 'string' || !OID_RE.test(o.oid) ||
		    !Number.isInteger(o.size) || o.size < 0) {
			return { oid: o && o.oid, size: o && o.size,
				 error: { code: 422, message: 'invalid oid or size' } };
		}
		const have = objectSize(repo, o.oid);
		if (body.operation === 'download') {
			if (have < 0) {
				return { oid: o.oid, size: o.size,
					 error: { code: 404, message: 'Object does not exist' } };
			}
			if (have !== o.size) {
				return { oid: o.oid, size: o.size,
					 error: { code: 422,
						  message: `size is ${have}, not ${o.size}` } };
			}
			return { oid: o.oid, size: o.size, authenticated: true, actions: {
				download: { href: `${base}/${o.oid}`, header: actionHeader(),
					    expires_in: 3600 } } };
		}
		if (have === o.size) return { oid: o.oid, size: o.size };
		return { oid: o.oid, size: o.size, authenticated: true, actions: {
			upload: { href: `${base}/${o.oid}`, header: actionHeader(),
				  expires_in: 3600 },
			verify: { href: `${base}/${o.oid}/verify`, header: actionHeader(),
				  expires_in: 3600 } } };
	});
	sendJSON(res, 200, { transfer: 'basic', objects, hash_algo: 'sha256' });
}

function handleGet(req, res, repo, oid) {
	stats.get++;
	if (opts.failGet > 0) {
		opts.failGet--;
		const extra = opts.retryAfter !== '' ? { 'Retry-After': opts.retryAfter } : {};
		log(`get: injected ${opts.failStatus}`);
		sendJSON(res, opts.failStatus, { message: 'injected failure, try again' }, extra);
		return;
	}
	const p = objectPath(repo, oid);
	let st;
	try {
		st = fs.statSync(p);
	} catch (e) {
		sendJSON(res, 404, { message: 'Object does not exist' });
		return;
	}
	res.writeHead(200, { 'Content-Type': 'application/octet-stream',
			     'Content-Length': st.size });
	const rs = fs.createReadStream(p);
	if (!opts.corrupt) {
		rs.pipe(res);
		return;
	}
	// Same length, one bit flipped in the first chunk: only a hash catches it.
	let first = true;
	rs.on('data', (chunk) => {
		if (first && chunk.length > 0) {
			chunk = Buffer.from(chunk);
			chunk[0] ^= 1;
			first = false;
		}
		if (!res.write(chunk)) {
			rs.pause();
			res.once('drain', () => rs.resume());
		}
	});
	rs.on('end', () => res.end());
	rs.on('error', () => res.destroy());
}

function handlePut(req, res, repo, oid) {
	stats.put++;
	const final = objectPath(repo, oid);
	fs.mkdirSync(path.dirname(final), { recursive: true });
	const tmp = `${final}.tmp-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
	const ws = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
	const hash = crypto.createHash('sha256');
	let n = 0;
	req.on('data', (c) => {
		hash.update(c);
		n += c.length;
	});
	req.pipe(ws);
	const fail = (status, msg) => {
		fs.rm(tmp, { force: true }, () => sendJSON(res, status, { message: msg }));
	};
	req.on('error', () => fail(400, 'upload interrupted'));
	ws.on('error', (e) => fail(500, `cannot store object: ${e.message}`));
	ws.on('finish', () => {
		const got = hash.digest('hex');
		const want = parseInt(req.headers['content-length'] || '-1', 10);
		if (got !== oid || (want >= 0 && n !== want)) {
			fail(422, `uploaded bytes have sha256 ${got}, not ${oid}`);
			return;
		}
		fs.rename(tmp, final, (e) => {
			if (e) fail(500, `cannot store object: ${e.message}`);
			else {
				res.writeHead(200);
				res.end();
			}
		});
	});
}

async function handleVerify(req, res, repo, oid) {
	stats.verify++;
	let body;
	try {
		body = JSON.parse((await readBody(req, 65536)).toString('utf8'));
	} catch (e) {
		sendJSON(res, 422, { message: 'malformed verify request' });
		return;
	}
	if (!body || body.oid !== oid) {
		sendJSON(res, 422, { message: 'verify request names another oid' });
		return;
	}
	const have = objectSize(repo, oid);
	if (have < 0) sendJSON(res, 404, { message: 'Object does not exist' });
	else if (have !== body.size) sendJSON(res, 422, { message: `size is ${have}` });
	else sendJSON(res, 200, { message: 'ok' });
}

async function handleControl(req, res) {
	let body;
	try {
		body = JSON.parse((await readBody(req, 65536)).toString('utf8'));
	} catch (e) {
		sendJSON(res, 400, { message: 'malformed control request' });
		return;
	}
	if ('fail_batch' in body) opts.failBatch = body.fail_batch | 0;
	if ('fail_get' in body) opts.failGet = body.fail_get | 0;
	if ('fail_status' in body) opts.failStatus = body.fail_status | 0;
	if ('retry_after' in body) opts.retryAfter = String(body.retry_after);
	if ('corrupt' in body) opts.corrupt = !!body.corrupt;
	if ('token' in body) opts.token = String(body.token);
	sendJSON(res, 200, { ok: true });
}

const server = http.createServer((req, res) => {
	const url = new URL(req.url, 'http://localhost');
	const p = decodeURIComponent(url.pathname);
	const done = (e) => {
		log(`${req.method} ${p}: ${e.message}`);
		if (!res.headersSent) sendJSON(res, 500, { message: 'internal error' });
		else res.destroy();
	};
	if (p === '/_control' && req.method === 'POST') {
		handleControl(req, res).catch(done);
		return;
	}
	if (p === '/_stats' && req.method === 'GET') {
		sendJSON(res, 200, stats);
		return;
	}
	const m = /^\/(.+)\/info\/lfs\/(objects\/batch|objects\/([0-9a-f]{64})(\/verify)?|locks.*)$/
		.exec(p);
	if (!m || !safeRepo(m[1])) {
		sendJSON(res, 404, { message: `no such route ${req.method} ${p}` });
		return;
	}
	if (!authorized(req)) {
		stats.unauthorized++;
		sendJSON(res, 401, { message: 'Credentials needed' },
			 { 'LFS-Authenticate': 'Basic realm="rehydra-test"' });
		return;
	}
	const repo = m[1];
	const oid = m[3];
	const post = req.method === 'POST';
	if (m[2] === 'objects/batch' && post) handleBatch(req, res, repo).catch(done);
	else if (oid && m[4] && post) handleVerify(req, res, repo, oid).catch(done);
	else if (oid && !m[4] && req.method === 'GET') handleGet(req, res, repo, oid);
	else if (oid && !m[4] && req.method === 'PUT') handlePut(req, res, repo, oid);
	else sendJSON(res, 404, { message: `not supported: ${req.method} ${p}` });
});

server.listen(opts.port, '127.0.0.1', () => {
	process.stdout.write(`${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
