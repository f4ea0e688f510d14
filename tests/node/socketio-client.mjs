// The official socket.io-client, driven by the Rust Socket.IO tests (tests/tests/socketio.rs).
//
//   node socketio-client.mjs <namespace-url> <token> [room=ROOM] [since=N] [until=N|terminal]
//                            [transports=websocket|polling] [timeout=MS] [probe=1] [ack=1]
//
// Connects to <namespace-url> (e.g. http://127.0.0.1:4000/streaming) with auth { token }. On
// every connect (the first and each reconnect) it joins ROOM, with `since` = the offset of the
// last publication it saw (or the `since` argument before it saw any) and that publication's
// epoch. It prints one JSON line per thing that happens:
//
//   {"kind":"event","event":"gateway.connected","data":{...}}   every server event, as received
//   {"kind":"joined","ack":{...}}                                 the answer to a join
//   {"kind":"disconnect","reason":"io server disconnect"}
//   {"kind":"connect_error","message":"...","error":{...}|null}  then exits 0
//   {"kind":"done"}                                               then exits 0
//   {"kind":"fatal","message":"..."}                              then exits 1
//
// It is done after the publication with offset `until` (default: a stream.complete or
// stream.error). With `probe=1` and no room it sends a few commands once connected, prints
// {"kind":"ack","event":"...","ack":{...}} for each answer, and is done after the last.
// With `ack=1` it answers the acknowledgement callback of every publication sent with `ack`
// and prints {"kind":"acked","event":"...","offset":N}; without it, it never answers.
// After a `gateway.disconnect` with `reconnect: true`, it calls
// `socket.connect()` when the server has disconnected it, as docs/protocol-socketio.md tells
// clients to. Without a room it is done once connected. It gives up after `timeout` ms
// (default 30000).
import { io } from 'socket.io-client';

const [url, token, ...rest] = process.argv.slice(2);
if (!url || token === undefined) {
  console.error('usage: node socketio-client.mjs <namespace-url> <token> [key=value ...]');
  process.exit(2);
}
const options = Object.fromEntries(
  rest.map((arg) => {
    const at = arg.indexOf('=');
    return at < 0 ? [arg, ''] : [arg.slice(0, at), arg.slice(at + 1)];
  }),
);
const room = options.room;
const until = options.until ?? 'terminal';
const timeoutMs = Number(options.timeout ?? 30000);

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
setTimeout(() => finish(1, { kind: 'fatal', message: `timed out after ${timeoutMs} ms` }), timeoutMs).unref();

let lastOffset = options.since === undefined ? undefined : Number(options.since);
let lastEpoch = options.epoch === undefined ? undefined : Number(options.epoch);
let reconnect = false;

const socket = io(url, {
  auth: { token, deviceId: 'e2e-node', clientVersion: 'socket.io-client/4.8' },
  transports: options.transports ? options.transports.split(',') : undefined,
  reconnectionDelay: 50,
  reconnectionDelayMax: 500,
});

socket.onAny((event, data, ...rest) => {
  print({ kind: 'event', event, data });
  // A publication sent with `ack` carries the Socket.IO acknowledgement callback last.
  const callback = rest.at(-1);
  if (options.ack === '1' && typeof callback === 'function') {
    callback('ok');
    print({ kind: 'acked', event, offset: data && data.offset });
  }
  if (event === 'gateway.disconnect') {
    reconnect = Boolean(data && data.reconnect);
  }
  const isPublication = event.startsWith('stream.');
  if (!isPublication || !data) return;
  if (data.offset > 0) {
    lastOffset = data.offset;
    lastEpoch = data.epoch;
  }
  const terminal = event === 'stream.complete' || event === 'stream.error';
  if ((until === 'terminal' && terminal) || (until !== 'terminal' && data.offset >= Number(until))) {
    finish(0, { kind: 'done' });
  }
});

// Commands whose answers `probe=1` checks: a good one, a refused one, an invalid one.
const probes = [
  ['ping', {}],
  ['leave', { room: 'execution:never-joined' }],
  ['join', { room: 'Not A Room' }],
  ['ack', { room: 'execution:1', offset: '7' }],
  ['subscribe', { room: 'execution:1' }],
];

function probe() {
  let answered = 0;
  for (const [event, payload] of probes) {
    socket.timeout(10000).emit(event, payload, (err, ack) => {
      if (err) return finish(1, { kind: 'fatal', message: `${event}: ${err.message}` });
      print({ kind: 'ack', event, ack });
      answered += 1;
      if (answered === probes.length) finish(0, { kind: 'done' });
    });
  }
}

socket.on('connect', () => {
  if (!room && options.probe) {
    socket.once('gateway.connected', probe);
    return;
  }
  if (!room) {
    // Wait for gateway.connected, which follows the namespace connect.
    socket.once('gateway.connected', () => finish(0, { kind: 'done' }));
    return;
  }
  const join = { room };
  if (lastOffset !== undefined) {
    join.since = lastOffset;
    if (lastEpoch !== undefined) join.epoch = lastEpoch;
  }
  socket.timeout(10000).emit('join', join, (err, ack) => {
    if (err) {
      // Acks pending at a disconnect fail; the next connect joins again.
      if (socket.connected) finish(1, { kind: 'fatal', message: `join: ${err.message}` });
      return;
    }
    print({ kind: 'joined', ack });
    if (ack && ack.error) finish(1, { kind: 'fatal', message: `join refused: ${ack.error.code}` });
  });
});

socket.on('disconnect', (reason) => {
  print({ kind: 'disconnect', reason });
  if (reason === 'io server disconnect' && reconnect && !finished) {
    reconnect = false;
    socket.connect();
  }
});

socket.on('connect_error', (err) => {
  let error = null;
  try {
    error = JSON.parse(err.message);
  } catch {
    // Not one of ours (a network error while reconnecting): socket.io-client retries.
  }
  if (error || !socket.active) {
    finish(0, { kind: 'connect_error', message: err.message, error });
  }
});
