// streamgate demo page: watches one synthetic LLM run over WebSocket, Server-Sent Events or
// Socket.IO, and shows offset-based resumption after a dropped connection. No dependencies:
// the Socket.IO client below is a minimal Engine.IO v4 / Socket.IO v5 client over a browser
// WebSocket. Wire protocol: docs/protocol.md (sections 1-6, 10 for SSE, 11 for Socket.IO).
(() => {
  'use strict';

  const LABELS = { websocket: 'WebSocket', sse: 'Server-Sent Events', socketio: 'Socket.IO' };
  const DEFAULT_PATHS = {
    websocket: '/ws',
    sse: '/sse',
    sse_commands: '/sse/commands',
    socketio: '/socket.io',
    socketio_namespace: '/streaming',
  };
  // WebSocket close codes after which reconnecting with the same token fails the same way
  // (non-recoverable codes of section 7.1, and 1009 for an oversize frame).
  const FATAL_CLOSE = new Set([1009, 4001, 4003, 4004, 4006, 4007, 4008, 4009, 4010, 4014]);
  const CLOSE_NAMES = {
    4001: 'AUTH_FAILED', 4002: 'TOKEN_EXPIRED', 4003: 'PERMISSION_DENIED',
    4004: 'ROOM_ACCESS_DENIED', 4005: 'RATE_LIMITED', 4006: 'VALIDATION_FAILED',
    4007: 'PROTOCOL_ERROR', 4008: 'UNKNOWN_COMMAND', 4009: 'FRAME_TOO_LARGE',
    4010: 'NOT_JOINED', 4011: 'SLOW_CONSUMER', 4012: 'SERVER_OVERLOADED',
    4013: 'SHUTTING_DOWN', 4014: 'STREAM_ABORTED', 4015: 'IDLE_TIMEOUT', 4016: 'INTERNAL',
    4017: 'ROOM_FULL', 1009: 'FRAME_TOO_LARGE',
  };
  const EXPLAIN = {
    websocket: (p) => `A browser WebSocket on ${p.websocket} with the streamgate.v1.json subprotocol; the token goes in a first auth frame. After a drop the page joins again with since and epoch of the last offset it saw, and the server replays exactly what was missed.`,
    sse: (p) => `An EventSource on ${p.sse}?rooms=…&token=…. It reconnects by itself with a Last-Event-ID cursor; after a drop the page opens a new EventSource with the same cursor, 1;room~epoch~offset, as last_event_id.`,
    socketio: (p) => `Engine.IO v4 over a plain WebSocket on ${p.socketio}, namespace ${p.socketio_namespace}, token in the auth payload. On every gateway.connected the page emits join with since and epoch; the answer says how many missed publications follow.`,
  };
  const DROP_DELAY_MS = 500;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 8000;
  const MAX_ATTEMPTS = 10;
  const COMMAND_TIMEOUT_MS = 10000;
  const LOG_LIMIT = 300;

  // ---------------------------------------------------------------------------------------
  // Small helpers

  const $ = (id) => document.getElementById(id);

  function wsUrl(path, query) {
    const url = new URL(path, location.href);
    if (url.protocol === 'https:') url.protocol = 'wss:';
    else if (url.protocol === 'http:') url.protocol = 'ws:';
    for (const [k, v] of Object.entries(query || {})) url.searchParams.set(k, v);
    return url.href;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  function errorText(error) {
    if (!error) return 'unknown error';
    return error.code ? `${error.code}: ${error.message || ''}`.trim() : String(error.message || error);
  }

  function backoff(attempt) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt - 1));
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  // A request/answer table for commands whose answer arrives asynchronously.
  function pendingTable() {
    const waiting = new Map();
    return {
      add(id) {
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            waiting.delete(id);
            reject(new Error('no answer'));
          }, COMMAND_TIMEOUT_MS);
          waiting.set(id, { resolve, reject, timer });
        });
      },
      settle(id, error, value) {
        const w = waiting.get(id);
        if (!w) return false;
        waiting.delete(id);
        clearTimeout(w.timer);
        if (error) w.reject(Object.assign(new Error(errorText(error)), error));
        else w.resolve(value);
        return true;
      },
      failAll(reason) {
        for (const [id, w] of waiting) {
          clearTimeout(w.timer);
          w.reject(new Error(reason));
          waiting.delete(id);
        }
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // Transports. Each `open*(opts, on)` connects, authenticates and joins `opts.room`, and
  // reports through `on`:
  //   on.connected(frame)        the `connected` frame (a new session)
  //   on.joined(frame)           the `joined` frame / answer (room, epoch, offset, recovered, missed)
  //   on.joinFailed(error)       the join was refused (error object of section 7.1)
  //   on.pub(frame)              a `pub` frame
  //   on.notice(text, kind)      something worth a log line
  //   on.reconnecting(text)      the transport reconnects by itself (EventSource)
  //   on.closed({retry, code, detail, retryAfter})  the connection is gone
  // and returns { close(), command(name) } where close() ends it without any report.
  // opts: { paths, token, room, since?, epoch? } (WebSocket, Socket.IO), { ..., cursor? } (SSE).

  // Raw WebSocket, JSON codec (sections 1-4): subprotocol streamgate.v1.json, the token in a
  // first `auth` frame, `join` with since+epoch when resuming.
  function openWebSocket(opts, on) {
    const ws = new WebSocket(wsUrl(opts.paths.websocket), 'streamgate.v1.json');
    const pending = pendingTable();
    let nextId = 1;
    let joinId = null;
    let goodbye = null;
    let done = false;
    const send = (frame) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    };
    const finish = (info) => {
      if (done) return;
      done = true;
      pending.failAll('connection closed');
      on.closed(info);
    };

    ws.onopen = () => send({ type: 'auth', token: opts.token });
    ws.onmessage = (event) => {
      if (typeof event.data !== 'string') return;
      const frame = parseJson(event.data);
      if (!frame || typeof frame !== 'object') return;
      switch (frame.type) {
        case 'connected': {
          on.connected(frame);
          joinId = nextId++;
          const join = { type: 'join', id: joinId, room: opts.room };
          if (opts.since != null) join.since = opts.since;
          if (opts.since != null && opts.epoch != null) join.epoch = opts.epoch;
          send(join);
          break;
        }
        case 'joined':
          if (frame.room === opts.room) on.joined(frame);
          break;
        case 'pub':
          on.pub(frame);
          break;
        case 'reply':
          pending.settle(frame.id, null, frame.data ?? null);
          break;
        case 'error':
          if (frame.id != null && frame.id === joinId) on.joinFailed(frame.error);
          else if (frame.id == null || !pending.settle(frame.id, frame.error)) {
            on.notice(`server error: ${errorText(frame.error)}`, 'bad');
          }
          break;
        case 'disconnect':
          goodbye = frame;
          on.notice(`server disconnect: ${frame.code} (${frame.reason})`, frame.reconnect ? 'warn' : 'bad');
          break;
        default:
          break; // pong, presence, token.expiring and future frame types
      }
    };
    ws.onerror = () => {}; // always followed by close
    ws.onclose = (event) => {
      const code = goodbye ? goodbye.code : CLOSE_NAMES[event.code] || `close ${event.code}`;
      const retry = goodbye ? goodbye.reconnect : !FATAL_CLOSE.has(event.code);
      finish({ retry, code, detail: goodbye ? goodbye.reason : null });
    };

    return {
      close() {
        done = true;
        pending.failAll('connection closed');
        ws.onopen = ws.onmessage = ws.onclose = null;
        try {
          ws.close();
        } catch { /* already closed */ }
      },
      command(name) {
        const id = nextId++;
        const answer = pending.add(id);
        send({ type: 'command', id, name, room: opts.room });
        return answer;
      },
    };
  }

  // Server-Sent Events (section 10): GET {sse}?rooms=<room>&token=<jwt>[&last_event_id=<cursor>].
  // EventSource reconnects by itself with Last-Event-ID; a page that opens a new EventSource
  // (after Drop) passes the cursor as last_event_id. Commands: POST {sse_commands}.
  function openSse(opts, on) {
    const params = new URLSearchParams({ rooms: opts.room, token: opts.token });
    if (opts.cursor) params.set('last_event_id', opts.cursor);
    const es = new EventSource(`${opts.paths.sse}?${params}`);
    const pending = pendingTable();
    let session = null;
    let opened = false;
    let joined = false;
    let done = false;
    let nextId = 1;
    const frameOf = (event) => parseJson(event.data);
    const finish = (info) => {
      if (done) return;
      done = true;
      pending.failAll('connection closed');
      es.close();
      on.closed(info);
    };

    es.addEventListener('connected', (event) => {
      const frame = frameOf(event);
      if (!frame) return;
      session = frame.session;
      opened = true;
      joined = false;
      on.connected(frame);
    });
    es.addEventListener('joined', (event) => {
      const frame = frameOf(event);
      if (!frame || frame.room !== opts.room) return;
      joined = true;
      on.joined(frame);
    });
    es.addEventListener('pub', (event) => {
      const frame = frameOf(event);
      if (frame) on.pub(frame);
    });
    es.addEventListener('reply', (event) => {
      const frame = frameOf(event);
      if (frame) pending.settle(frame.id, null, frame.data ?? null);
    });
    es.addEventListener('disconnect', (event) => {
      const frame = frameOf(event);
      if (!frame) return;
      if (frame.reconnect) {
        // The response ends; EventSource comes back by itself with Last-Event-ID.
        on.notice(`server disconnect: ${frame.code} (${frame.reason})`, 'warn');
      } else {
        finish({ retry: false, code: frame.code, detail: frame.reason });
      }
    });
    es.addEventListener('error', (event) => {
      if (done) return;
      if (event instanceof MessageEvent && event.data) {
        // An `error` frame from the server, not a connection problem.
        const frame = frameOf(event);
        if (!frame) return;
        if (frame.id != null && pending.settle(frame.id, frame.error)) return;
        if (frame.id == null && !joined) on.joinFailed(frame.error); // a refused join of the URL's rooms
        else on.notice(`server error: ${errorText(frame.error)}`, 'bad');
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        // A response that is not 200 (401, 400, 403 ... or a proxy error): EventSource gave
        // up. Before the first `connected` it is a refusal; later, the server may be
        // restarting, so the page reconnects itself with the cursor.
        finish({ retry: opened, code: opened ? 'stream closed' : 'refused', detail: opened ? 'the event stream ended' : 'the server refused the event stream (HTTP error)' });
      } else if (opened) {
        pending.failAll('connection lost');
        joined = false;
        on.reconnecting('event stream lost; EventSource reconnects with Last-Event-ID');
      }
    });

    return {
      close() {
        done = true;
        pending.failAll('connection closed');
        es.close();
      },
      async command(name) {
        if (!session) throw new Error('not connected yet');
        const id = nextId++;
        const answer = pending.add(id);
        answer.catch(() => {}); // observed below or by the caller
        const res = await fetch(opts.paths.sse_commands || DEFAULT_PATHS.sse_commands, {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            Authorization: `Bearer ${opts.token}`,
            'X-Streamgate-Session': session,
          },
          body: JSON.stringify({ type: 'command', id, name, room: opts.room }),
        });
        if (res.status !== 202) {
          const body = await res.json().catch(() => null);
          pending.settle(id, (body && body.error) || { code: `HTTP ${res.status}`, message: res.statusText });
        }
        return answer;
      },
    };
  }

  // Socket.IO (section 11) over a plain WebSocket: Engine.IO v4 packets
  //   0 open, 1 close, 2 ping, 3 pong, 4 message, 6 noop
  // carrying Socket.IO v5 packets (after the 4)
  //   0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR
  // as  <type>[/<namespace>,][<ack id>][<JSON>].
  function openSocketIo(opts, on) {
    const nsp = opts.paths.socketio_namespace || DEFAULT_PATHS.socketio_namespace;
    const base = String(opts.paths.socketio).replace(/\/+$/, '');
    const ws = new WebSocket(wsUrl(`${base}/`, { EIO: '4', transport: 'websocket' }));
    const prefix = nsp === '/' ? '' : `${nsp},`;
    const acks = new Map();
    let nextAck = 1;
    let goodbye = null;
    let done = false;
    let heartbeat = null;
    let heartbeatMs = 45000;

    const sendRaw = (text) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(text);
    };
    const emit = (event, data, callback) => {
      let id = '';
      if (callback) {
        id = String(nextAck++);
        acks.set(Number(id), callback);
      }
      sendRaw(`42${prefix}${id}${JSON.stringify([event, data])}`);
    };
    const failAcks = (reason) => {
      for (const callback of acks.values()) callback({ error: { code: 'DISCONNECTED', message: reason } });
      acks.clear();
    };
    const stop = () => {
      done = true;
      clearTimeout(heartbeat);
      failAcks('connection closed');
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch { /* already closed */ }
    };
    const finish = (info) => {
      if (done) return;
      stop();
      on.closed(info);
    };
    // The server pings every pingInterval; without one for pingInterval + pingTimeout the
    // connection is dead (Engine.IO's "ping timeout").
    const armHeartbeat = () => {
      clearTimeout(heartbeat);
      heartbeat = setTimeout(() => finish({ retry: true, code: 'ping timeout', detail: 'no Engine.IO ping from the server' }), heartbeatMs);
    };

    const onEvent = (event, payload) => {
      switch (event) {
        case 'gateway.connected': {
          on.connected(payload);
          const join = { room: opts.room };
          if (opts.since != null) join.since = opts.since;
          if (opts.since != null && opts.epoch != null) join.epoch = opts.epoch;
          emit('join', join, (answer) => {
            if (done) return;
            if (!answer || answer.error) on.joinFailed((answer && answer.error) || { code: 'INTERNAL', message: 'empty join answer' });
            else on.joined({ type: 'joined', ...answer });
          });
          break;
        }
        case 'stream.data':
        case 'stream.complete':
        case 'stream.error':
        case 'stream.cancelled':
          on.pub(payload);
          break;
        case 'gateway.disconnect':
          goodbye = payload;
          on.notice(`server disconnect: ${payload.code} (${payload.reason})`, payload.reconnect ? 'warn' : 'bad');
          break;
        case 'gateway.error':
          on.notice(`server error: ${errorText(payload && payload.error)}`, 'bad');
          break;
        default:
          break; // presence, token.expiring, future events
      }
    };

    const onPacket = (packet) => {
      const type = packet[0];
      let i = 1;
      let ns = '/';
      if (packet[i] === '/') {
        const comma = packet.indexOf(',', i);
        ns = comma === -1 ? packet.slice(i) : packet.slice(i, comma);
        i = comma === -1 ? packet.length : comma + 1;
      }
      if (ns !== nsp) return;
      let j = i;
      while (j < packet.length && packet[j] >= '0' && packet[j] <= '9') j += 1;
      const ackId = j > i ? Number(packet.slice(i, j)) : null;
      const body = packet.length > j ? parseJson(packet.slice(j)) : null;
      switch (type) {
        case '0': // CONNECT accepted: {"sid": ...}; gateway.connected follows
          on.notice(`Socket.IO namespace ${nsp} connected`, 'muted');
          break;
        case '4': { // CONNECT_ERROR: {"message": "<error object as JSON>"}
          const raw = body && body.message;
          const error = (typeof raw === 'string' && parseJson(raw)) || { code: 'connect_error', message: String(raw ?? 'refused') };
          finish({ retry: !!error.recoverable && error.code !== 'TOKEN_EXPIRED', code: error.code, detail: error.message, retryAfter: error.retry_after_ms });
          break;
        }
        case '2': // EVENT ["name", payload]; acknowledge when the server asks for it
          if (!Array.isArray(body) || typeof body[0] !== 'string') return;
          if (ackId !== null) sendRaw(`43${prefix}${ackId}[]`);
          onEvent(body[0], body[1]);
          break;
        case '3': { // ACK [answer]
          const callback = acks.get(ackId);
          acks.delete(ackId);
          if (callback) callback(Array.isArray(body) ? body[0] : body);
          break;
        }
        case '1': // DISCONNECT of the namespace by the server ("io server disconnect")
          finish({
            retry: goodbye ? goodbye.reconnect : false,
            code: goodbye ? goodbye.code : 'io server disconnect',
            detail: goodbye ? goodbye.reason : 'the server closed the namespace',
          });
          break;
        default:
          break;
      }
    };

    ws.onmessage = (event) => {
      if (typeof event.data !== 'string' || !event.data) return;
      const text = event.data;
      switch (text[0]) {
        case '0': { // open: {"sid","upgrades","pingInterval","pingTimeout","maxPayload"}
          const open = parseJson(text.slice(1)) || {};
          heartbeatMs = (open.pingInterval || 25000) + (open.pingTimeout || 20000);
          armHeartbeat();
          sendRaw(`40${prefix}${JSON.stringify({ token: opts.token, clientVersion: 'streamgate-demo/1' })}`);
          break;
        }
        case '2': // ping -> pong
          sendRaw(`3${text.slice(1)}`);
          armHeartbeat();
          break;
        case '4':
          onPacket(text.slice(1));
          break;
        case '1': // Engine.IO close
          finish({ retry: goodbye ? goodbye.reconnect : true, code: goodbye ? goodbye.code : 'transport close', detail: 'the server closed the Engine.IO connection' });
          break;
        default:
          break; // 3 pong, 6 noop
      }
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      finish({
        retry: goodbye ? goodbye.reconnect : true,
        code: goodbye ? goodbye.code : 'transport close',
        detail: goodbye ? goodbye.reason : `WebSocket close ${event.code}`,
      });
    };

    return {
      close: stop,
      command(name) {
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no answer')), COMMAND_TIMEOUT_MS);
          emit('command', { name, room: opts.room }, (answer) => {
            clearTimeout(timer);
            if (answer && answer.error) reject(Object.assign(new Error(errorText(answer.error)), answer.error));
            else resolve(answer ? answer.data ?? null : null);
          });
        });
      },
    };
  }

  const OPEN = { websocket: openWebSocket, sse: openSse, socketio: openSocketIo };

  // ---------------------------------------------------------------------------------------
  // State

  let paths = { ...DEFAULT_PATHS };
  let S = freshState(selectedTransport());
  let current = null; // the active run
  let startSeq = 0;

  function freshState(transport) {
    return {
      transport,
      connection: 'idle',
      room: null,
      expected: null,
      publications: 0,
      tokens: 0,
      text: '',
      progress: 0,
      stage: null,
      offsets: [],
      epoch: null,
      lastOffset: 0,
      duplicates: 0,
      resumes: 0,
      missed: 0,
      lastRecovered: null,
      complete: false,
      outcome: null,
    };
  }

  // ---------------------------------------------------------------------------------------
  // The run controller

  function waitJoin(run) {
    return new Promise((resolve, reject) => run.waiters.push({ resolve, reject }));
  }

  function settleWaiters(run, error, value) {
    const waiters = run.waiters;
    run.waiters = [];
    for (const w of waiters) {
      if (error) w.reject(error);
      else w.resolve(value);
    }
  }

  function connect(run) {
    if (run !== current || run.ended) return;
    clearTimeout(run.timer);
    const gen = ++run.gen;
    const transport = S.transport;
    setConnection(run.joinedOnce || run.reconnecting ? 'reconnecting' : 'connecting');
    const opts = { paths: run.paths, token: run.token, room: run.room };
    const pos = run.pos;
    if (transport === 'sse') {
      // The SSE cursor of section 10.3: "1;<room>~<epoch>~<offset>".
      if (pos) opts.cursor = `1;${run.room}~${pos.epoch}~${pos.offset}`;
    } else if (pos) {
      opts.since = pos.offset;
      opts.epoch = pos.epoch;
    } else {
      // First join: since 0 without an epoch replays whatever the room published before
      // this join (recovered: true), so the page never misses the start of the run.
      opts.since = 0;
    }
    run.sent = opts;
    const live = () => run === current && run.gen === gen && !run.ended;

    const on = {
      connected(frame) {
        if (!live()) return;
        log(`connected over ${LABELS[transport]} · session ${frame.session}`, 'muted');
      },
      joined(frame) {
        if (live()) onJoined(run, frame);
      },
      joinFailed(error) {
        if (!live()) return;
        if (run.conn) run.conn.close();
        run.conn = null;
        lost(run, { retry: !!(error && error.recoverable), code: error && error.code, detail: error && error.message, retryAfter: error && error.retry_after_ms });
      },
      pub(frame) {
        if (live()) onPub(run, frame);
      },
      notice(text, kind) {
        if (live()) log(text, kind);
      },
      reconnecting(text) {
        if (!live()) return;
        run.reconnecting = true;
        setConnection('reconnecting');
        log(text, 'warn');
      },
      closed(info) {
        if (!live()) return;
        run.conn = null;
        lost(run, info);
      },
    };
    log(describeConnect(transport, run, opts), 'wire');
    run.conn = OPEN[transport](opts, on);
  }

  function describeConnect(transport, run, opts) {
    const p = run.paths;
    if (transport === 'websocket') {
      const join = opts.epoch != null ? `join since=${opts.since} epoch=${opts.epoch}` : `join since=${opts.since}`;
      return `→ WebSocket ${p.websocket} (streamgate.v1.json): auth, ${join}`;
    }
    if (transport === 'sse') {
      return `→ GET ${p.sse}?rooms=${run.room}${opts.cursor ? ` last_event_id=${opts.cursor}` : ''}`;
    }
    const join = opts.epoch != null ? `join since=${opts.since} epoch=${opts.epoch}` : `join since=${opts.since}`;
    return `→ Socket.IO ${p.socketio}/?EIO=4&transport=websocket, namespace ${p.socketio_namespace}: ${join}`;
  }

  function onJoined(run, frame) {
    const first = !run.joinedOnce;
    // SSE cannot ask for "everything since offset 0" without knowing the epoch. If the run
    // already published before this first join, reconnect once with the cursor at offset 0
    // of that epoch, which replays the beginning.
    if (first && S.transport === 'sse' && !frame.recovered && frame.offset > 0 && S.lastOffset === 0 && !run.caughtUp) {
      run.caughtUp = true;
      log(`joined after ${frame.offset} publications; reopening the stream from offset 0 to replay them`, 'muted');
      run.conn.close();
      run.conn = null;
      run.pos = { epoch: frame.epoch, offset: 0 };
      connect(run);
      return;
    }
    run.attempts = 0;
    run.reconnecting = false;
    run.replayLeft = 0;
    if (first) {
      const since = run.sent && run.sent.since != null ? ` (asked since=${run.sent.since})` : '';
      log(`joined ${frame.room} · epoch ${frame.epoch}, offset ${frame.offset}${frame.missed ? `, ${frame.missed} earlier publications follow` : ''}${since}`, 'ok');
    } else {
      S.resumes += 1;
      S.lastRecovered = !!frame.recovered;
      S.missed += frame.missed || 0;
      run.replayLeft = frame.recovered ? frame.missed || 0 : 0;
      log(`resumed: recovered=${!!frame.recovered}, ${frame.missed || 0} missed`, frame.recovered ? 'ok' : 'warn');
      if (!frame.recovered) {
        log(`history no longer reaches back: continuing live from epoch ${frame.epoch}, offset ${frame.offset}`, 'warn');
      }
    }
    if (!frame.recovered) run.pos = { epoch: frame.epoch, offset: frame.offset };
    else if (!run.pos) run.pos = { epoch: frame.epoch, offset: run.sent && run.sent.since != null ? run.sent.since : 0 };
    run.joinedOnce = true;
    setConnection('connected');
    settleWaiters(run, null, {
      transport: S.transport,
      room: frame.room,
      epoch: frame.epoch,
      offset: frame.offset,
      recovered: !!frame.recovered,
      missed: frame.missed || 0,
    });
  }

  function onPub(run, p) {
    if (p.room !== run.room) return;
    S.publications += 1;
    let replayed = false;
    if (p.offset > 0) {
      S.offsets.push(p.offset);
      if (S.epoch === p.epoch && p.offset <= S.lastOffset) {
        S.duplicates += 1;
        tick(p, 'dup');
        log(`duplicate: offset ${p.offset} (last seen ${S.lastOffset}) ignored`, 'bad');
        render();
        return;
      }
      if (S.epoch !== null && S.epoch !== p.epoch) log(`new epoch ${p.epoch}: the room's history was reset`, 'warn');
      S.epoch = p.epoch;
      S.lastOffset = p.offset;
      run.pos = { epoch: p.epoch, offset: p.offset };
      if (run.replayLeft > 0) {
        run.replayLeft -= 1;
        replayed = true;
      }
      tick(p, replayed ? 'replay' : 'live');
    }
    const data = p.data && typeof p.data === 'object' ? p.data : {};
    switch (p.event) {
      case 'stream.token':
        S.tokens += 1;
        if (typeof data.text === 'string') {
          S.text += data.text;
          appendOutput(data.text);
        }
        break;
      case 'stream.progress':
        if (typeof data.value === 'number') S.progress = Math.max(0, Math.min(1, data.value));
        S.stage = data.stage || S.stage;
        break;
      case 'stream.event':
        log(`${data.name || 'event'} ${summarize(data.data)}`, 'node');
        break;
      case 'stream.complete':
        S.progress = 1;
        S.complete = true;
        finish(run, 'complete', `complete · ${S.tokens} tokens, offsets 1–${S.lastOffset}`);
        break;
      case 'stream.cancelled':
        finish(run, 'cancelled', 'cancelled: the run was stopped');
        break;
      case 'stream.error':
        finish(run, 'error', `stream error: ${errorText(data)}`);
        break;
      default:
        log(`${p.event} ${summarize(p.data)}`, 'muted');
        break;
    }
    render();
  }

  function summarize(value) {
    if (value === undefined || value === null) return '';
    if (typeof value !== 'object') return String(value);
    const parts = Object.entries(value).map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : v}`);
    const text = parts.join(' ');
    return text.length > 120 ? `${text.slice(0, 117)}…` : text;
  }

  // A terminal update: stop watching the room.
  function finish(run, outcome, message) {
    run.ended = true;
    clearTimeout(run.timer);
    S.outcome = outcome;
    if (run.conn) {
      run.conn.close();
      run.conn = null;
    }
    S.connection = 'closed';
    log(message, outcome === 'complete' ? 'ok' : 'warn');
    settleWaiters(run, new Error(`the run ended (${outcome})`));
    render();
  }

  // The connection is gone without a terminal update.
  function lost(run, info) {
    if (run.ended) return;
    if (!info.retry) {
      fail(run, `connection closed: ${info.code || 'error'}${info.detail ? ` (${info.detail})` : ''}`);
      return;
    }
    run.attempts += 1;
    if (run.attempts > MAX_ATTEMPTS) {
      fail(run, `gave up after ${MAX_ATTEMPTS} attempts (${info.code})`);
      return;
    }
    const delay = info.retryAfter > 0 ? info.retryAfter : backoff(run.attempts);
    run.reconnecting = true;
    setConnection('reconnecting');
    log(`connection lost: ${info.code || 'closed'}${info.detail ? ` (${info.detail})` : ''}; reconnecting in ${delay} ms`, 'warn');
    clearTimeout(run.timer);
    run.timer = setTimeout(() => connect(run), delay);
  }

  function fail(run, message) {
    run.ended = true;
    clearTimeout(run.timer);
    if (run.conn) {
      run.conn.close();
      run.conn = null;
    }
    S.connection = 'closed';
    S.outcome = S.outcome || 'failed';
    log(message, 'bad');
    settleWaiters(run, new Error(message));
    render();
  }

  function stopCurrent() {
    const run = current;
    current = null;
    if (!run) return;
    run.ended = true;
    clearTimeout(run.timer);
    if (run.conn) run.conn.close();
    run.conn = null;
    settleWaiters(run, new Error('replaced by a new run'));
  }

  async function start(transport) {
    const choice = transport || selectedTransport();
    if (!LABELS[choice]) throw new Error(`unknown transport ${choice}: use websocket, sse or socketio`);
    if (!paths[choice]) throw new Error(`${LABELS[choice]} is disabled on this server`);
    const seq = ++startSeq;
    stopCurrent();
    selectTransport(choice);
    S = freshState(choice);
    resetView();
    setConnection('connecting');
    log(`POST /demo/run · ${LABELS[choice]}`, 'wire');

    let info;
    try {
      const res = await fetch('/demo/run', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{}',
      });
      const body = await res.json().catch(() => null);
      if (!res.ok) {
        const error = (body && body.error) || { code: `HTTP ${res.status}`, message: res.statusText };
        throw Object.assign(new Error(errorText(error)), error);
      }
      info = body;
    } catch (e) {
      if (seq === startSeq) {
        S.connection = 'closed';
        S.outcome = 'failed';
        log(`could not start a run: ${e.message}`, 'bad');
        render();
      }
      throw e;
    }
    if (seq !== startSeq) throw new Error('replaced by a new run');
    if (info && info.paths) applyPaths(info.paths);
    const runPaths = { ...DEFAULT_PATHS, ...(info.paths || paths) };
    if (!runPaths[choice]) {
      S.connection = 'closed';
      render();
      throw new Error(`${LABELS[choice]} is disabled on this server`);
    }

    const run = {
      room: info.room,
      token: info.token,
      paths: runPaths,
      conn: null,
      gen: 0,
      timer: null,
      attempts: 0,
      joinedOnce: false,
      reconnecting: false,
      caughtUp: false,
      pos: null,
      sent: null,
      replayLeft: 0,
      ended: false,
      waiters: [],
    };
    current = run;
    S.room = info.room;
    S.expected = typeof info.tokens === 'number' ? info.tokens : null;
    log(`run started in ${info.room}${S.expected ? ` · ~${S.expected} tokens` : ''}`, 'muted');
    const joined = waitJoin(run);
    connect(run);
    render();
    return joined;
  }

  function drop() {
    const run = current;
    if (!run || run.ended) return Promise.resolve(null);
    clearTimeout(run.timer);
    run.gen += 1; // ignore anything the old connection still reports
    if (run.conn) {
      run.conn.close();
      run.conn = null;
    }
    run.reconnecting = true;
    setConnection('reconnecting');
    log(`connection dropped: resuming from offset ${run.pos ? run.pos.offset : 0} in ${DROP_DELAY_MS} ms`, 'warn');
    const joined = waitJoin(run).catch(() => null);
    run.timer = setTimeout(() => connect(run), DROP_DELAY_MS);
    return joined;
  }

  // Hands a running stream over to another transport, resuming from the last offset.
  function switchTransport(transport) {
    const run = current;
    if (!run || run.ended || !run.paths[transport] || transport === S.transport) return Promise.resolve(null);
    clearTimeout(run.timer);
    run.gen += 1;
    if (run.conn) {
      run.conn.close();
      run.conn = null;
    }
    log(`switching to ${LABELS[transport]}, resuming from offset ${run.pos ? run.pos.offset : 0}`, 'warn');
    S.transport = transport;
    run.reconnecting = true;
    const joined = waitJoin(run).catch(() => null);
    connect(run);
    return joined;
  }

  async function cancel() {
    const run = current;
    if (!run || run.ended || !run.conn || S.connection !== 'connected') return null;
    log('→ command stream.cancel', 'wire');
    try {
      await run.conn.command('stream.cancel');
      log('stop accepted; waiting for stream.cancelled', 'muted');
      return true;
    } catch (e) {
      log(`stop refused: ${e.message}`, 'bad');
      return false;
    }
  }

  function snapshot() {
    return {
      transport: S.transport,
      connection: S.connection,
      room: S.room,
      tokens: S.tokens,
      text: S.text,
      progress: S.progress,
      offsets: S.offsets.slice(),
      duplicates: S.duplicates,
      resumes: S.resumes,
      missed: S.missed,
      lastRecovered: S.lastRecovered,
      lastOffset: S.lastOffset,
      epoch: S.epoch,
      publications: S.publications,
      complete: S.complete,
      outcome: S.outcome,
    };
  }

  // ---------------------------------------------------------------------------------------
  // View

  let outputText = null;
  let renderQueued = false;
  let logStart = performance.now();

  function selectedTransport() {
    const checked = document.querySelector('input[name="transport"]:checked');
    return checked ? checked.value : 'websocket';
  }

  function selectTransport(transport) {
    const input = $(`transport-${transport}`);
    if (input) input.checked = true;
  }

  function setConnection(state) {
    S.connection = state;
    render();
  }

  function resetView() {
    logStart = performance.now();
    $('log').replaceChildren();
    $('timeline').replaceChildren();
    const output = $('output');
    output.replaceChildren();
    outputText = document.createTextNode('');
    const caret = document.createElement('span');
    caret.className = 'caret';
    caret.setAttribute('aria-hidden', 'true');
    output.append(outputText, caret);
    output.dataset.empty = 'true';
  }

  function appendOutput(text) {
    const output = $('output');
    if (!outputText || !output.contains(outputText)) {
      outputText = document.createTextNode('');
      output.prepend(outputText);
    }
    const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 24;
    outputText.appendData(text);
    output.dataset.empty = 'false';
    if (atBottom) output.scrollTop = output.scrollHeight;
  }

  function tick(p, kind) {
    const el = document.createElement('i');
    el.className = `tick ${kind}`;
    el.title = `offset ${p.offset} · ${p.event}${kind === 'replay' ? ' · recovered on resume' : kind === 'dup' ? ' · duplicate' : ''}`;
    if (p.event !== 'stream.token') el.classList.add('marker');
    $('timeline').append(el);
  }

  function log(text, kind = 'info') {
    const list = $('log');
    const item = document.createElement('li');
    item.className = `log-${kind}`;
    const time = document.createElement('time');
    time.textContent = `${((performance.now() - logStart) / 1000).toFixed(2).padStart(6, ' ')}s`;
    const message = document.createElement('span');
    message.textContent = text;
    item.append(time, message);
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    list.append(item);
    while (list.children.length > LOG_LIMIT) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function render() {
    if (renderQueued) return;
    renderQueued = true;
    // Coalesce the many updates of a fast stream into one paint; fall back to a timer when
    // the page is hidden (requestAnimationFrame does not run then).
    const run = () => {
      if (!renderQueued) return;
      renderQueued = false;
      paint();
    };
    requestAnimationFrame(run);
    setTimeout(run, 100);
  }

  function paint() {
    const active = !!current && !current.ended;
    const badge = $('state');
    const shown = S.complete && S.connection === 'closed' ? 'complete' : S.connection;
    badge.dataset.state = shown;
    $('state-text').textContent = S.connection === 'idle' ? 'idle' : `${shown} · ${LABELS[S.transport]}`;

    $('count-publications').textContent = String(S.publications);
    $('count-offset').textContent = S.lastOffset ? String(S.lastOffset) : '–';
    $('count-resumes').textContent = String(S.resumes);
    $('count-missed').textContent = String(S.missed);
    $('count-duplicates').textContent = String(S.duplicates);
    $('duplicates-box').dataset.bad = String(S.duplicates > 0);
    $('room').textContent = S.room || '–';

    $('progress').value = S.progress;
    $('progress-label').textContent = `${Math.round(S.progress * 100)}%${S.stage ? ` · ${S.stage}` : ''}`;
    $('token-count').textContent = S.expected ? `${S.tokens} / ${S.expected} tokens` : `${S.tokens} tokens`;
    $('output').dataset.streaming = String(S.connection !== 'idle' && !S.outcome);

    $('drop').disabled = !active;
    $('stop').disabled = !active || S.connection !== 'connected';
    const shownTransport = active ? S.transport : selectedTransport();
    const explain = EXPLAIN[shownTransport](current && !current.ended ? current.paths : paths);
    if ($('explain').textContent !== explain) $('explain').textContent = explain;
    $('start-label').textContent = S.connection === 'idle' ? 'Start demo run' : 'Start a new run';
    document.body.dataset.running = String(active);
  }

  function applyPaths(next) {
    if (!next || typeof next !== 'object') return;
    paths = { ...DEFAULT_PATHS, ...next };
    for (const transport of Object.keys(LABELS)) {
      const input = $(`transport-${transport}`);
      const enabled = !!paths[transport];
      input.disabled = !enabled;
      input.closest('label').classList.toggle('disabled', !enabled);
      input.closest('label').title = enabled ? '' : `${LABELS[transport]} is disabled on this server`;
    }
    for (const el of document.querySelectorAll('[data-path]')) {
      const value = paths[el.dataset.path];
      if (value) el.textContent = value;
    }
    const chosen = $(`transport-${selectedTransport()}`);
    if (chosen && chosen.disabled) {
      const first = Object.keys(LABELS).find((t) => paths[t]);
      if (first) selectTransport(first);
    }
    if (!current) S.transport = selectedTransport();
    render();
  }

  async function loadConfig() {
    try {
      const res = await fetch('/demo/config', { headers: { Accept: 'application/json' } });
      if (!res.ok) return;
      const body = await res.json();
      applyPaths(body && body.paths ? body.paths : body);
    } catch {
      // No config endpoint: every transport is offered.
    }
  }

  function init() {
    resetView();
    log('press Start to stream a synthetic LLM answer; press Drop connection while it streams', 'muted');
    $('start').addEventListener('click', () => {
      start(selectedTransport()).catch(() => {}); // failures are in the log
    });
    $('drop').addEventListener('click', () => {
      drop();
    });
    $('stop').addEventListener('click', () => {
      cancel();
    });
    for (const input of document.querySelectorAll('input[name="transport"]')) {
      input.addEventListener('change', () => {
        if (!input.checked) return;
        if (current && !current.ended) switchTransport(input.value);
        else {
          if (S.connection === 'idle') S.transport = input.value;
          render();
        }
      });
    }
    render();
    config = loadConfig();
  }

  let config = Promise.resolve();

  window.demo = {
    // POST /demo/run, connect with `transport` ("websocket" | "sse" | "socketio") and join the
    // run's room; resolves with the join answer once joined.
    async start(transport) {
      await config;
      return start(transport);
    },
    // Closes the connection abruptly, reconnects after 500 ms and resumes from the last offset;
    // resolves with the resumed join answer (null when there was nothing to drop).
    drop,
    // Hands the running stream over to another transport (resume from the last offset).
    switch: switchTransport,
    // Sends the stream.cancel command (Stop).
    stop: cancel,
    state: snapshot,
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
