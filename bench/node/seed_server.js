// The signed routing of wxio's predecessor (an egg.js `mobile-sdk` on egg-socket.io), written on
// Node as bench/compare.py's peer of the routing core: socket.io 4.8 (default options) for
// socket.io clients and a raw `ws` 8 endpoint at /ws for plain JSON frames, on one port, with
// the same wire as wxio's core (docs/guide.md, "Signing", "The envelope", "Three ways in"):
//
//   connect    socket.io: {app, timestamp, sign[, userId]} in the CONNECT auth payload (or the
//              query string); a refusal is connect_error {reason, message}.
//              raw /ws: the same fields in the query string (or X-Wxio-App, -Timestamp, -Sign,
//              -User headers); greeted by a `connect` envelope carrying the client id, refused
//              by a `deny` envelope and a close with 4001 (bad_signature), 4002 (expired) or
//              4005 (malformed).
//   messages   socket.io: emit("requestMessage", envelope[, callback]), answers to the callback
//              or as "responseMessage"; deliveries as "responseMessage". raw: one envelope per
//              text frame, both ways.
//   signing    md5(app + key + timestamp), hex, timestamp within 300 s: checked at connect and
//              on every message but ping and ack (computed afresh every time: nothing cached).
//   actions    sendToOthers: the target is looked up among the app's raw and socket.io clients;
//              it gets an `exchange`, the sender a `result` (delivered, guarantee "sent"); an
//              unknown target is `deny target_offline`. requestId -> saveId, ping -> pong, ack
//              is taken and ignored. Anything else is `deny unknown_action`.
//
// Nothing is kept: no inbox, no user bindings (a userId is only echoed to the client and named
// as the sender of what it sends): wxio's `keep_until_ack = false`, minus the inbox for users
// who are away.
//
// Usage: node seed_server.js PORT '{"<app>": "<key>", ...}'
"use strict";

const crypto = require("node:crypto");
const { createServer } = require("node:http");
const { Server } = require("socket.io");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2]);
const KEYS = new Map(Object.entries(JSON.parse(process.argv[3] || "{}")));
const WINDOW_MS = 300_000;
const MAX_ID_LEN = 128;
const MAX_FRAME_BYTES = 1_000_000;
const REQUEST_EVENT = "requestMessage";
const RESPONSE_EVENT = "responseMessage";
// Close codes of the raw endpoint, as wxio's (docs/guide.md, "the raw WebSocket endpoint").
const CLOSE_CODES = { bad_signature: 4001, expired: 4002, malformed: 4005 };

class Denied extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

// -- signing -------------------------------------------------------------------------------------

/** Milliseconds as a JSON integer, or as a string of at most 16 ASCII digits. */
function timestampOf(value, field) {
  if (typeof value === "string" && /^[0-9]{1,16}$/.test(value)) value = Number(value);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Denied("malformed", `${field}: must be a non-negative integer (milliseconds)`);
  }
  return value;
}

/** Throws Denied unless `sign` is md5(app + key + timestamp) within the window. An unknown app
 * fails as a bad signature, after the same work. */
function verify(app, timestamp, sign, field = "meta.timestamp") {
  const ts = timestampOf(timestamp, field);
  const key = KEYS.get(app);
  const expected = crypto
    .createHash("md5")
    .update(`${app}${key === undefined ? "\0" : key}${ts}`)
    .digest();
  const given = typeof sign === "string" && sign.length === 32 ? Buffer.from(sign, "hex") : null;
  const ok = given !== null && given.length === 16 && crypto.timingSafeEqual(expected, given);
  if (!ok || key === undefined) throw new Denied("bad_signature", "bad signature");
  if (Math.abs(Date.now() - ts) > WINDOW_MS) {
    throw new Denied("expired", "timestamp outside the accepted window");
  }
}

/** Connect credentials -> {app, userId}; throws Denied. */
function authenticate(creds) {
  const { app, timestamp, sign, userId } = creds;
  if (typeof app !== "string" || sign === undefined || sign === null || timestamp == null) {
    throw new Denied("malformed", "app, timestamp and sign are required");
  }
  if (userId != null && (typeof userId !== "string" || !userId || userId.length > MAX_ID_LEN)) {
    throw new Denied("malformed", `userId: must be a string of 1 to ${MAX_ID_LEN} characters`);
  }
  verify(app, timestamp, sign, "timestamp");
  return { app, userId: userId ?? null };
}

// -- the registry: every connected client of every app, raw and socket.io alike -----------------

/** app -> (client id -> connection) */
const clients = new Map();
const ID_PREFIX = crypto.randomBytes(6).toString("base64url");
let msgCounter = 0;

class Connection {
  constructor(id, app, userId) {
    this.id = id;
    this.app = app;
    this.userId = userId;
  }
  register() {
    let members = clients.get(this.app);
    if (members === undefined) clients.set(this.app, (members = new Map()));
    members.set(this.id, this);
  }
  unregister() {
    const members = clients.get(this.app);
    if (members !== undefined && members.get(this.id) === this) {
      members.delete(this.id);
      if (members.size === 0) clients.delete(this.app);
    }
  }
}

class RawConnection extends Connection {
  constructor(id, app, userId, ws) {
    super(id, app, userId);
    this.ws = ws;
  }
  send(envelope) {
    this.ws.send(JSON.stringify(envelope));
  }
}

class SioConnection extends Connection {
  constructor(socket, app, userId) {
    super(socket.id, app, userId);
    this.socket = socket;
  }
  send(envelope) {
    this.socket.emit(RESPONSE_EVENT, envelope);
  }
}

// -- envelopes ---------------------------------------------------------------------------------

/** An envelope's meta, in wxio's field order, with null and undefined fields left out. */
function meta(fields) {
  const out = {};
  for (const k in fields) if (fields[k] != null) out[k] = fields[k];
  return out;
}

function reply(action, conn, payload = null, target = null, msgId = null) {
  const m = meta({
    timestamp: Date.now(),
    app: conn.app,
    client: conn.id,
    userId: conn.userId,
    target,
    msgId,
  });
  return { meta: m, data: { action, payload } };
}

function deny(denied, conn) {
  const m = conn
    ? { timestamp: Date.now(), app: conn.app, client: conn.id }
    : { timestamp: Date.now() };
  const message = denied.message || denied.reason.replace(/_/g, " ");
  return { meta: m, data: { action: "deny", payload: { reason: denied.reason, message } } };
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function idField(m, name) {
  const v = m[name];
  if (v == null) return null;
  if (typeof v !== "string" || !v || v.length > MAX_ID_LEN) {
    const why = `must be a string of 1 to ${MAX_ID_LEN} characters`;
    throw new Denied("malformed", `meta.${name}: ${why}`);
  }
  return v;
}

/** One envelope from a connected client; every answer goes to `respond`. */
function handle(conn, raw, respond) {
  try {
    if (!isObject(raw)) throw new Denied("malformed", "envelope: must be an object");
    const m = raw.meta == null ? {} : raw.meta;
    if (!isObject(m)) throw new Denied("malformed", "meta: must be an object");
    const data = raw.data;
    if (!isObject(data)) throw new Denied("malformed", "data: must be an object");
    const action = data.action;
    if (typeof action !== "string" || !action || action.length > 64) {
      throw new Denied("malformed", "data.action: must be a string of 1 to 64 characters");
    }
    const app = idField(m, "app");
    if (app !== null && app !== conn.app) {
      throw new Denied("unknown_app", "meta.app is not this connection's app");
    }
    if (action === "ack") return; // nothing is kept, so there is nothing to let go of
    if (action === "ping") {
      respond(reply("pong", conn));
      return;
    }
    if (action !== "requestId" && action !== "sendToOthers") {
      throw new Denied("unknown_action", `unknown action '${action}'`);
    }
    if (m.timestamp == null || m.sign == null) {
      throw new Denied("bad_signature", "meta.timestamp and meta.sign are required");
    }
    verify(conn.app, m.timestamp, m.sign);
    if (action === "requestId") {
      respond(reply("saveId", conn));
      return;
    }
    const target = idField(m, "target");
    if (target === null) throw new Denied("malformed", "meta.target: required");
    const to = clients.get(conn.app)?.get(target);
    if (to === undefined) throw new Denied("target_offline", "target is not connected");
    const msgId = `${ID_PREFIX}${(msgCounter++).toString(16)}`;
    const exchange = meta({
      timestamp: Date.now(),
      app: conn.app,
      client: conn.id,
      userId: conn.userId,
      target,
      msgId,
    });
    to.send({ meta: exchange, data: { action: "exchange", payload: data.payload ?? null } });
    const result = { status: "delivered", msgId, guarantee: "sent", delivered: 1 };
    respond(reply("result", conn, result, target, msgId));
  } catch (e) {
    if (!(e instanceof Denied)) throw e;
    respond(deny(e, conn));
  }
}

// -- one HTTP server: socket.io on /socket.io/, the raw endpoint on /ws ---------------------------

const httpServer = createServer();
const io = new Server(httpServer);

io.use((socket, next) => {
  const shake = socket.handshake;
  const creds = shake.auth && shake.auth.sign != null ? shake.auth : shake.query;
  try {
    const { app, userId } = authenticate(creds);
    socket.data.core = new SioConnection(socket, app, userId);
    next();
  } catch (e) {
    if (!(e instanceof Denied)) return next(e);
    const err = new Error(e.reason);
    err.data = { reason: e.reason, message: e.message };
    next(err);
  }
});

io.on("connection", (socket) => {
  const conn = socket.data.core;
  conn.register();
  socket.on(REQUEST_EVENT, (raw, callback) => {
    if (typeof raw === "string") {
      try {
        raw = JSON.parse(raw); // some clients emit JSON.stringify(envelope)
      } catch {
        // left as it is: denied as malformed
      }
    }
    handle(conn, raw, typeof callback === "function" ? callback : (out) => conn.send(out));
  });
  socket.on("disconnect", () => conn.unregister());
});

const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });

function rawCredentials(req) {
  const url = new URL(req.url, "http://localhost");
  const q = Object.fromEntries(url.searchParams);
  if (q.sign !== undefined) return q;
  const h = req.headers;
  return {
    app: q.app ?? h["x-wxio-app"],
    timestamp: h["x-wxio-timestamp"],
    sign: h["x-wxio-sign"],
    userId: h["x-wxio-user"],
  };
}

wss.on("connection", (ws, req) => {
  let ident;
  try {
    ident = authenticate(rawCredentials(req));
  } catch (e) {
    if (!(e instanceof Denied)) throw e;
    ws.send(JSON.stringify(deny(e, null)));
    ws.close(CLOSE_CODES[e.reason] ?? 4000, e.reason);
    return;
  }
  const id = crypto.randomBytes(15).toString("base64url");
  const conn = new RawConnection(id, ident.app, ident.userId, ws);
  // Greeted first, then reachable.
  const greeting = meta({
    timestamp: Date.now(),
    app: conn.app,
    client: conn.id,
    userId: conn.userId,
  });
  ws.send(JSON.stringify({ meta: greeting, data: { action: "connect", payload: null } }));
  conn.register();
  ws.alive = true;
  ws.on("pong", () => (ws.alive = true));
  const respond = (out) => conn.send(out);
  ws.on("message", (data, isBinary) => {
    if (isBinary) {
      respond(deny(new Denied("malformed", "text frames only"), conn));
      return;
    }
    let raw;
    try {
      raw = JSON.parse(data.toString("utf8"));
    } catch (e) {
      respond(deny(new Denied("malformed", `invalid JSON: ${e.message}`), conn));
      return;
    }
    handle(conn, raw, respond);
  });
  ws.on("close", () => conn.unregister());
  ws.on("error", () => {});
});

httpServer.on("upgrade", (req, socket, head) => {
  // socket.io's engine takes /socket.io/ upgrades through its own listener.
  if (req.url === "/ws" || req.url.startsWith("/ws?")) {
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
  }
});

// WebSocket pings every 25 s on /ws (socket.io has its own heartbeat).
const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) ws.terminate();
    else {
      ws.alive = false;
      ws.ping();
    }
  }
}, 25_000);
heartbeat.unref();

httpServer.listen(port, "127.0.0.1", () => {
  const v = (name) => require(`${name}/package.json`).version;
  console.log(`seed routing on Node: socket.io ${v("socket.io")}, ws ${v("ws")}, on ${port}`);
});

process.on("SIGTERM", () => process.exit(0));
