#!/usr/bin/env node
'use strict';
/**
 * Test peer for the wxio JS client (clients/js/dist/wxio.js), run as a mini program: the bundle
 * is loaded with loadMiniprogramModule under the wx shim, exactly as a mini program that copied
 * the file would load it. Same line protocol as peer.js (see README.md):
 *
 *   node tests/js/sdk_peer.js
 *
 * Commands (each answered with {"ev":"done"} or {"ev":"error"}):
 *   {"cmd":"client","name":"a","url":"http://127.0.0.1:PORT","creds":{...},"options":{...}}
 *        creds {app, key, userId}: signed in the sandbox with wxio.signMd5 at every call of the
 *        credentials callback; or {app, secret, sub, ttl, expIn?}: a new HS256 token
 *        {sub, iat, exp: now + ttl} at every call, returned as {app, token} (with expIn: also
 *        exp = now + expIn, which the client takes over the token's own; subs [..]: the sub of
 *        the 1st, 2nd.. call, the last one after that); or
 *        {app, timestamp, sign, userId} as given. Every call is reported as
 *        {"ev":"creds","name":..,"n":<calls so far>}.
 *        options go to wxio.connect; "transport":"socketio" uses weapp.socket.io's io under
 *        the shim, or "io":"sio4" / "io":"sio2" Node's socket.io-client 4.8 / 2.5 (npm
 *        packages socket.io-client and socket.io-client-v2); "wx":true passes the shim's wx
 *   {"cmd":"send","name":"a","target":"<client id>","payload":...,"options":{receipt?,timeout?}}
 *        -> {"ev":"sent","id":..,"result":{status,msgId,delivered,forwarded,dropped,target}}
 *        or {"ev":"rejected","id":..,"reason":..,"message":..}
 *   {"cmd":"receipt","name":"a","msgId":"..","timeout":N}   client.receipt(msgId): "sent" with
 *        the receipt as result, or "rejected"
 *   {"cmd":"broadcast","name":"a","payload":...}   likewise
 *   {"cmd":"close","name":"a"}
 *   {"cmd":"stats","name":"a"}  -> {"ev":"stats","stats":{...},"sockets":N}
 *   {"cmd":"app","file":"/abs/app.js"}   run a mini program's app.js (App, wx.request, wx.showToast
 *        are provided; toasts come out as {"ev":"toast","title":..})
 *   {"cmd":"background","cutMs":N} / {"cmd":"foreground"}   wx.onAppHide/onAppShow, then the cut
 *   {"cmd":"exit"}
 * Events: {"ev":"client","name":..,"type":"connect"|"disconnect"|"reconnecting"|"exchange"|
 *   "broadcast"|"deny"|"result"|"receipt"|"error","data":{...}} (envelopes left out), in order.
 */

const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');
const readline = require('node:readline');
const { WxShim } = require('./wx_shim');

console.log = console.error;
const out = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const report = (source) => (err) => out({ ev: 'script_error', source, message: String(err && err.message) });
process.on('uncaughtException', report('uncaught'));

const DIST = path.resolve(__dirname, '../../clients/js/dist/wxio.js');
const shim = new WxShim({ onScriptError: report('callback') });
const wxio = shim.loadMiniprogramModule(DIST);
let weappIo = null;
const clients = new Map();
const EVENTS = [
  'connect', 'disconnect', 'reconnecting', 'exchange', 'broadcast', 'deny', 'result', 'receipt',
  'error', 'refreshed',
];

/** An HS256 JWT, as an app's backend would issue it. */
function mint(secret, claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${crypto.createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** A plain JSON copy (values of the sandbox realm included), envelopes dropped. */
function plain(value) {
  if (value instanceof shim.realm.Error || value instanceof Error) {
    return { reason: value.reason ?? null, message: value.message };
  }
  return JSON.parse(JSON.stringify(value ?? null, (key, v) => (key === 'envelope' ? undefined : v)));
}

function get(cmd) {
  const client = clients.get(cmd.name ?? 'main');
  if (!client) throw new Error(`no client ${cmd.name}`);
  return client;
}

/** Run a client request; its outcome comes later as "sent" or "rejected". */
function settle(cmd, promise) {
  promise.then(
    (result) => out({ ev: 'sent', id: cmd.id ?? null, name: cmd.name ?? 'main', result: plain(result) }),
    (err) => out({ ev: 'rejected', id: cmd.id ?? null, name: cmd.name ?? 'main', reason: err.reason ?? null, message: err.message }),
  );
}

const commands = {
  client(cmd) {
    const name = cmd.name ?? 'main';
    if (clients.has(name)) throw new Error(`client ${name} exists`);
    const creds = cmd.creds;
    let calls = 0;
    const credentials = () => {
      calls += 1;
      out({ ev: 'creds', name, n: calls });
      if (creds.secret !== undefined) {
        const now = Math.floor(Date.now() / 1000);
        const sub = creds.subs ? creds.subs[Math.min(calls, creds.subs.length) - 1] : creds.sub;
        const token = mint(creds.secret, { sub, iat: now, exp: now + creds.ttl });
        const given = { app: creds.app, token };
        if (creds.expIn !== undefined) given.exp = now + creds.expIn;
        return shim.realm.JSON.parse(JSON.stringify(given));
      }
      if (creds.key === undefined) return shim.realm.JSON.parse(JSON.stringify(creds));
      const signed = wxio.signMd5(creds.app, creds.key);
      if (creds.userId !== undefined) signed.userId = creds.userId;
      return signed;
    };
    const options = shim.realm.JSON.parse(JSON.stringify(cmd.options ?? {}));
    options.credentials = () => Promise.resolve(credentials());
    if (options.wx === true) options.wx = shim.wx; // the client finds wx itself only for 'ws'
    if (options.transport === 'socketio' && options.io === 'sio4') {
      options.io = require('socket.io-client').io;
    } else if (options.transport === 'socketio' && options.io === 'sio2') {
      options.io = require('socket.io-client-v2');
    } else if (options.transport === 'socketio') {
      weappIo = weappIo || shim.loadMiniprogramModule(
        path.join(__dirname, 'node_modules/weapp.socket.io/lib/weapp.socket.io.js'));
      options.io = weappIo;
    }
    const client = wxio.connect(cmd.url, options);
    for (const type of EVENTS) {
      client.on(type, (data) => out({ ev: 'client', name, type, data: plain(data) }));
    }
    clients.set(name, client);
  },
  send(cmd) {
    const options = shim.realm.JSON.parse(JSON.stringify(cmd.options ?? {}));
    settle(cmd, get(cmd).send(cmd.target, shim.realm.JSON.parse(JSON.stringify(cmd.payload ?? null)), options));
  },
  receipt(cmd) {
    settle(cmd, get(cmd).receipt(cmd.msgId, cmd.timeout ? { timeout: cmd.timeout } : undefined));
  },
  broadcast(cmd) {
    settle(cmd, get(cmd).broadcast(shim.realm.JSON.parse(JSON.stringify(cmd.payload ?? null))));
  },
  close(cmd) {
    get(cmd).close();
  },
  stats(cmd) {
    out({
      ev: 'stats', id: cmd.id ?? null, name: cmd.name ?? 'main', stats: plain(get(cmd).stats),
      sockets: shim.live.size, // wx sockets not yet closed, all clients together
    });
  },
  /** Run a mini program's app.js (its require()s resolve next to it): App(), wx.request and
   * wx.showToast are provided; each toast is reported as {"ev":"toast","title":..}. */
  app(cmd) {
    let config = null;
    shim.context.App = (c) => { config = c; };
    shim.wx.showToast = (opts) => out({ ev: 'toast', title: String(opts && opts.title) });
    shim.wx.request = (opts) => {
      http.get(opts.url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => { body += chunk; });
        res.on('end', () => shim.invoke(opts.success, {
          statusCode: res.statusCode, data: shim.realm.JSON.parse(body),
        }));
      }).on('error', (err) => shim.invoke(opts.fail, { errMsg: `request:fail ${err.message}` }));
    };
    shim.loadMiniprogramModule(cmd.file);
    if (!config) throw new Error('app.js did not call App()');
    if (typeof config.onLaunch === 'function') config.onLaunch.call(config, {});
  },
  background(cmd) {
    shim.enterBackground({ cutMs: cmd.cutMs });
  },
  foreground() {
    shim.enterForeground();
  },
  exit(cmd) {
    for (const client of clients.values()) client.close();
    process.stdout.write(`${JSON.stringify({ ev: 'done', id: cmd.id ?? null, cmd: 'exit' })}\n`,
      () => process.exit(0));
  },
};

function handle(line) {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (!Object.hasOwn(commands, cmd.cmd)) throw new Error(`unknown command ${cmd.cmd}`);
    commands[cmd.cmd](cmd);
    if (cmd.cmd !== 'exit') out({ ev: 'done', id: cmd.id ?? null, cmd: cmd.cmd });
  } catch (err) {
    out({ ev: 'error', id: cmd && cmd.id, cmd: cmd && cmd.cmd, message: err.message });
  }
}

out({ ev: 'ready', lib: 'wxio', package: 'wxio-client', version: wxio.VERSION, caps: {} });
readline.createInterface({ input: process.stdin }).on('line', handle).on('close', () => process.exit(0));
