// An app's backend in Node (express), as docs/hooks.md describes one: it verifies every
// request's signature and answers wxio's hooks. The same backend as tests/hooks/backend.py
// (whose docstring says what it decides); the tests run both.
//
//   HOOK_SECRET=... node tests/hooks/backend.js   -> prints {"port": N} once it listens
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const express = require(path.join(__dirname, "..", "js", "node_modules", "express"));

const SECRET = process.env.HOOK_SECRET;
const SESSIONS = { "sess-alice": { userId: "alice", info: { name: "Alice" } } };
const TOKENS = { "tok-bob": "bob" };
const WINDOW_MS = 300 * 1000;

// The verification docs/hooks.md gives: HMAC-SHA256 of timestamp + "." + the raw body.
function verify(secret, timestamp, signature, body) {
  if (!timestamp || !signature || !/^[0-9]{1,16}$/.test(timestamp)) return false;
  if (Math.abs(Date.now() - Number(timestamp)) > WINDOW_MS) return false;
  const expected = crypto.createHmac("sha256", secret)
    .update(timestamp + ".").update(body).digest("hex");
  const given = Buffer.from(signature.toLowerCase());
  return given.length === expected.length && crypto.timingSafeEqual(given, Buffer.from(expected));
}

const seen = { connect: [], message: [], disconnect: [], offline: [] };
const attempts = new Map();
let rejected = 0;

function verified(req) {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  if (!verify(SECRET, req.get("X-Wxio-Timestamp"), req.get("X-Wxio-Signature"), body)) {
    rejected += 1;
    return null;
  }
  return JSON.parse(body.toString("utf8"));
}

const first = (v) => (Array.isArray(v) ? v[0] : v);

function connect(data) {
  const session = SESSIONS[(data.cookies || {}).sid];
  if (session) return { allow: { userId: session.userId, info: session.info } };
  if (TOKENS[data.token]) return { allow: { userId: TOKENS[data.token] } };
  const ticket = data.auth.ticket || first(data.query.ticket);
  if (ticket === "anon") return { allow: {} };
  if (ticket === "slow") return null;
  return { deny: { reason: "not_allowed", message: "sign in first" } };
}

function message(data) {
  if ("event" in data) {
    const args = data.args;
    if (data.event === "chat") return { answer: { echo: args.length ? args[0] : null, userId: data.userId } };
    if (data.event === "shout") return { deliver: { args: [String(args[0]).toUpperCase(), ...args.slice(1)] } };
    return { deny: { reason: "not_allowed", message: "you are muted" } };
  }
  const { action, payload } = data.envelope.data;
  if (action === "getProfile") {
    const info = data.info || {};
    return { answer: { userId: data.userId, client: data.client, name: info.name ?? null } };
  }
  if (action === "misuse") return { deliver: {} };
  const isObject = payload !== null && typeof payload === "object" && !Array.isArray(payload);
  const text = isObject && payload.text !== undefined ? String(payload.text) : "";
  if (text === "slow") return null;
  if (text.includes("badword")) return { deny: { reason: "not_allowed", message: "mind your language" } };
  if (isObject && payload.keep) return { deliver: {} };
  return { deliver: { payload: { ...payload, text: text.toUpperCase(), checkedBy: "node" } } };
}

const app = express();
const raw = express.raw({ type: () => true, limit: "1mb" });

app.post("/wxio/:hook", raw, (req, res) => {
  const data = verified(req);
  if (data === null) return res.status(401).json({ error: "bad signature" });
  const hook = req.params.hook;
  (seen[hook] = seen[hook] || []).push(data);
  let answer;
  if (hook === "connect") answer = connect(data);
  else if (hook === "message") answer = message(data);
  else {
    const attempt = (attempts.get(data.id) || 0) + 1;
    attempts.set(data.id, attempt);
    if (data.userId === "flaky" && attempt === 1) return res.status(503).json({ error: "try again" });
    return res.status(204).end();
  }
  if (answer === null) return undefined; // never answered: wxio's timeout decides
  return res.json(answer);
});

app.post("/hang/:hook", raw, (req, res) => {
  const data = verified(req);
  if (data !== null) (seen[`hang-${req.params.hook}`] = seen[`hang-${req.params.hook}`] || []).push(data);
  // never answered
});

app.get("/seen", (req, res) => res.json({ seen, rejected }));

const server = app.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
// Node's keep-alive timeout stays its default (5 s): longer than wxio keeps an idle connection.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
