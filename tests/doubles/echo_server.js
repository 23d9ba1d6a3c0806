// echo_server.js - test double of a service: answers every request with
// 200 {"ok": true} and appends the raw request head it received (request
// line and headers, as bytes on the wire) to the file named by argv[2].
// Prints its port on stdout. Stopped by the test, by pid.
'use strict';
const net = require('net');
const fs = require('fs');
const log = process.argv[2];
const srv = net.createServer((sock) => {
	let buf = '';
	sock.on('data', (d) => {
		buf += d.toString('latin1');
		const end = buf.indexOf('\r\n\r\n');
		if (end < 0) return;
		fs.appendFileSync(log, buf.slice(0, end + 4));
		buf = '';
		const body = '{"ok": true}';
		sock.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n` +
			`Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
	});
	sock.on('error', () => {});
});
srv.listen(0, '127.0.0.1', () => process.stdout.write(`${srv.address().port}\n`));
