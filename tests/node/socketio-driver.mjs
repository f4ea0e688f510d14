// The official socket.io-client under the control of a Rust test, one request at a time
// (used by tests/tests/chat.rs).
//
//   node socketio-driver.mjs <namespace-url> <token>
//
// Connects to <namespace-url> (e.g. http://127.0.0.1:4000/streaming) with auth { token }, then
// reads one JSON request per line on stdin, {"id":N,"event":"<command>","data":{...}}, emits
// it with an acknowledgement callback, and prints JSON lines on stdout:
//
//   {"kind":"event","event":"stream.data","data":{...}}   every server event, as received
//   {"kind":"ack","id":N,"ack":{...}}                      the answer to request N
//   {"kind":"connect_error","message":"...","error":{...}|null}   then exits 0
//   {"kind":"fatal","message":"..."}                       then exits 1
//
// Exits 0 when stdin closes. Gives up after `timeout` ms (third argument, default 60000).
import readline from 'node:readline';
import { io } from 'socket.io-client';

const [url, token, timeout] = process.argv.slice(2);
if (!url || token === undefined) {
  console.error('usage: node socketio-driver.mjs <namespace-url> <token> [timeout-ms]');
  process.exit(2);
}

const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
let finished = false;
const finish = (code, line) => {
  if (finished) return;
  finished = true;
  if (line) print(line);
  socket.disconnect();
  // Let stdout drain before exiting.
  process.stdout.write('', () => process.exit(code));
};
setTimeout(
  () => finish(1, { kind: 'fatal', message: `timed out after ${timeout ?? 60000} ms` }),
  Number(timeout ?? 60000),
).unref();

const socket = io(url, {
  auth: { token, deviceId: 'e2e-driver', clientVersion: 'socket.io-client/4.8' },
  reconnection: false,
});

socket.onAny((event, data) => print({ kind: 'event', event, data }));

socket.on('connect_error', (err) => {
  let error = null;
  try {
    error = JSON.parse(err.message);
  } catch {
    // Not one of ours: a network error.
  }
  finish(0, { kind: 'connect_error', message: err.message, error });
});

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    finish(1, { kind: 'fatal', message: `bad request ${line}: ${e}` });
    return;
  }
  // socket.io-client buffers emits made before the connection is up.
  socket.timeout(10000).emit(request.event, request.data, (err, ack) => {
    if (err) {
      finish(1, { kind: 'fatal', message: `${request.event} #${request.id}: ${err.message}` });
      return;
    }
    print({ kind: 'ack', id: request.id, ack });
  });
});
lines.on('close', () => finish(0));
