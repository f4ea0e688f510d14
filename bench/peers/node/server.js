// Benchmark peer: a bare Socket.IO server on Node.
//
// The behaviour contract (identical to bench-peer-socketioxide) is in ../README.md. Nothing here
// logs per connection or per message: the peer is measured, not debugged.
//
//   node server.js --listen 127.0.0.1:PORT --secret S      (or BENCH_LISTEN / BENCH_SECRET)

import { createServer } from "node:http";
import { parseArgs } from "node:util";

import jwt from "jsonwebtoken";
import { Server } from "socket.io";

const MAX_ROOMS = 64;
const MAX_ROOM_BYTES = 128;

function fail(message) {
  process.stderr.write(`bench-peer-node: ${message}\n`);
  process.exit(2);
}

function config() {
  let values;
  try {
    ({ values } = parseArgs({
      options: { listen: { type: "string" }, secret: { type: "string" } },
      strict: true,
    }));
  } catch (error) {
    fail(error.message);
  }
  const listen = values.listen ?? process.env.BENCH_LISTEN;
  const secret = values.secret ?? process.env.BENCH_SECRET;
  if (!listen) fail("--listen HOST:PORT (or BENCH_LISTEN) is required");
  if (!secret) fail("--secret S (or BENCH_SECRET) is required");
  const colon = listen.lastIndexOf(":");
  const port = Number(listen.slice(colon + 1));
  if (colon < 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`invalid --listen address: ${listen}`);
  }
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  return { host, port, secret };
}

// HS256 only; `sub` (a non-empty string) and `exp` are required. jsonwebtoken checks `exp` and
// `nbf` when present, with no clock tolerance.
function authenticated(token, secret) {
  if (typeof token !== "string") return false;
  let claims;
  try {
    claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
  } catch {
    return false;
  }
  return (
    claims !== null &&
    typeof claims === "object" &&
    typeof claims.sub === "string" &&
    claims.sub.length > 0 &&
    typeof claims.exp === "number"
  );
}

function validRooms(rooms) {
  return (
    Array.isArray(rooms) &&
    rooms.length <= MAX_ROOMS &&
    rooms.every((room) => typeof room === "string" && Buffer.byteLength(room, "utf8") <= MAX_ROOM_BYTES)
  );
}

const { host, port, secret } = config();

const httpServer = createServer();
const io = new Server(httpServer, {
  path: "/socket.io",
  // The defaults already, spelled out because the comparison depends on them.
  perMessageDeflate: false,
  // socketioxide never compresses polling responses either.
  httpCompression: false,
});

// Only `/streaming` exists: refuse the main namespace the way an unknown one is refused.
io.of("/").use((_socket, next) => next(new Error("Invalid namespace")));

const streaming = io.of("/streaming");

streaming.use((socket, next) => {
  const auth = socket.handshake.auth ?? {};
  if (!authenticated(auth.token, secret)) return next(new Error("AUTH_FAILED"));
  if (!validRooms(auth.rooms)) return next(new Error("VALIDATION_FAILED"));
  // Joined on connection: a socket refused later never enters a room.
  socket.data.rooms = auth.rooms;
  next();
});

streaming.on("connection", (socket) => {
  socket.join(socket.data.rooms);
  delete socket.data.rooms;
  socket.on("publish", (payload) => {
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return;
    if (typeof payload.room !== "string" || !Object.hasOwn(payload, "data")) return;
    // The namespace broadcast includes the sender when it is in the room.
    streaming.to(payload.room).emit("message", payload.data);
  });
});

httpServer.once("error", (error) => fail(error.message));
httpServer.listen(port, host, () => {
  const address = httpServer.address();
  const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
  process.stdout.write(`listening on http://${shown}:${address.port}\n`);
});

let closing = false;
function shutdown() {
  if (closing) return;
  closing = true;
  // Closes every Socket.IO client, then the HTTP server.
  io.close(() => process.exit(0));
  // Guard against a peer that never finishes its close handshake.
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
