// blackhole.js - test double of a broken server: accepts TCP connections on
// 127.0.0.1 and never answers, never closes. Prints its port on stdout.
// Usage: node blackhole.js  (stopped by the test, by pid)
'use strict';
const net = require('net');
const held = [];
const srv = net.createServer((sock) => {
	held.push(sock); // keep it open; read and drop whatever arrives
	sock.on('data', () => {});
	sock.on('error', () => {});
});
srv.listen(0, '127.0.0.1', () => {
	process.stdout.write(`${srv.address().port}\n`);
});
