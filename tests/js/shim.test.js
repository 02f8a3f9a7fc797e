'use strict';
// Self-test of wx_shim.js against a local `ws` server on 127.0.0.1.
// Run: node --test tests/js/

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const { WebSocketServer } = require('ws');
const { WxShim } = require('./wx_shim');

const APPID = 'wxshimselftest0001';
const tick = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const isArrayBuffer = (v) => Object.prototype.toString.call(v) === '[object ArrayBuffer]';

/** Echo server: text back as text, binary back as binary; "close:<code>:<reason>" closes. */
function startEchoServer() {
  const connections = [];
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true });
  wss.on('connection', (ws, req) => {
    const conn = { ws, headers: req.headers, received: [], closed: null };
    connections.push(conn);
    ws.on('message', (data, isBinary) => {
      conn.received.push(isBinary ? Buffer.from(data) : data.toString());
      const text = isBinary ? null : data.toString();
      if (text && text.startsWith('close:')) {
        const [, code, reason] = text.split(':');
        ws.close(Number(code), reason);
      } else {
        ws.send(data, { binary: isBinary });
      }
    });
    ws.on('close', (code, reason) => { conn.closed = { code, reason: reason.toString() }; });
  });
  return new Promise((resolve) => wss.on('listening', () => resolve({
    wss,
    connections,
    url: `ws://127.0.0.1:${wss.address().port}/path?q=1`,
    close: () => new Promise((done) => {
      for (const client of wss.clients) client.terminate();
      wss.close(done);
    }),
  })));
}

/** Resolve with the first `kind` event of a task. */
const next = (task, kind) => new Promise((resolve) => {
  let fired = false;
  task[`on${kind}`]((res) => {
    if (!fired) { fired = true; resolve(res); }
  });
});

/** Call an API taking {success, fail, complete}; resolve with {ok, res, completed}. */
const call = (fn, opts = {}) => new Promise((resolve) => {
  let outcome;
  fn({
    ...opts,
    success: (res) => { outcome = { ok: true, res }; },
    fail: (res) => { outcome = { ok: false, res }; },
    complete: (res) => resolve({ ...outcome, completed: res }),
  });
});

async function openTask(shim, url, opts = {}) {
  const task = shim.wx.connectSocket({ url, ...opts });
  const opened = await next(task, 'Open');
  return { task, opened };
}

const waitFor = async (predicate, ms = 2000) => {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await tick(5);
  }
};

describe('wx shim', () => {
  let server;
  const shims = [];
  const newShim = (options = {}) => {
    const shim = new WxShim({ appid: APPID, ...options });
    shims.push(shim);
    return shim;
  };

  before(async () => { server = await startEchoServer(); });
  after(async () => {
    for (const shim of shims) shim.dispose();
    await server.close();
  });

  test('API shapes: wx functions and the SocketTask surface', () => {
    const shim = newShim();
    for (const name of ['connectSocket', 'onSocketOpen', 'onSocketMessage', 'onSocketError',
      'onSocketClose', 'sendSocketMessage', 'closeSocket']) {
      assert.equal(typeof shim.wx[name], 'function', name);
    }
    const task = shim.wx.connectSocket({ url: server.url });
    const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(task))
      .filter((n) => n !== 'constructor').sort();
    assert.deepEqual(methods, ['close', 'onClose', 'onError', 'onMessage', 'onOpen', 'send']);
    assert.deepEqual(Object.keys(task), []);
  });

  test('callbacks are asynchronous; success, then complete, with "<api>:ok"', async () => {
    const shim = newShim();
    const order = [];
    let returned = false;
    const done = new Promise((resolve) => {
      shim.wx.connectSocket({
        url: server.url,
        success: (res) => order.push(['success', returned, res.errMsg]),
        complete: (res) => { order.push(['complete', returned, res.errMsg]); resolve(); },
      });
      returned = true;
    });
    await done;
    assert.deepEqual(order, [
      ['success', true, 'connectSocket:ok'],
      ['complete', true, 'connectSocket:ok'],
    ]);
    // A refused call is asynchronous too.
    let failed = false;
    shim.wx.connectSocket({ url: 42, fail: () => { failed = true; } });
    assert.equal(failed, false);
    await tick(10);
    assert.equal(failed, true);
  });

  test('onOpen gives {header, profile}; text and ArrayBuffer echo', async () => {
    const shim = newShim();
    const { task, opened } = await openTask(shim, server.url);
    assert.equal(opened.header.upgrade, 'websocket');
    assert.equal(typeof opened.profile.cost, 'number');
    assert.equal(typeof opened.profile.fetchStart, 'number');

    const sent = await call((o) => task.send(o), { data: 'hello' });
    assert.deepEqual([sent.ok, sent.res.errMsg], [true, 'sendSocketMessage:ok']);
    assert.equal((await next(task, 'Message')).data, 'hello');

    const ab = new Uint8Array([1, 2, 3, 255]).buffer;
    const pending = new Promise((resolve) => {
      task.onMessage((res) => { if (typeof res.data !== 'string') resolve(res.data); });
    });
    assert.equal((await call((o) => task.send(o), { data: ab })).ok, true);
    const echoed = await pending;
    assert.ok(isArrayBuffer(echoed));
    assert.ok(echoed instanceof shim.realm.ArrayBuffer, 'delivered in the mini-program realm');
    assert.deepEqual([...new Uint8Array(echoed)], [1, 2, 3, 255]);
  });

  test('send refuses typed arrays, Buffers and objects; nothing reaches the server', async () => {
    const shim = newShim();
    const { task } = await openTask(shim, server.url);
    const conn = server.connections.at(-1);
    for (const [data, type] of [[new Uint8Array([1]), 'Uint8Array'], [Buffer.from([1]), 'Uint8Array'],
      [{ a: 1 }, 'Object'], [undefined, 'Undefined']]) {
      const r = await call((o) => task.send(o), { data });
      assert.equal(r.ok, false);
      assert.equal(r.res.errMsg,
        `sendSocketMessage:fail parameter error: parameter.data should be String/ArrayBuffer instead of ${type};`);
    }
    await tick(20);
    assert.deepEqual(conn.received, []);
  });

  test('close code must be 1000 or 3000-4999, reason at most 123 bytes', async () => {
    const shim = newShim();
    const { task } = await openTask(shim, server.url);
    for (const code of [1001, 1006, 2999, 5000, 3000.5, 'x']) {
      const r = await call((o) => task.close(o), { code });
      assert.equal(r.ok, false, String(code));
      assert.match(r.res.errMsg, /^closeSocket:fail The code must be either 1000, or between 3000 and 4999/);
    }
    const long = await call((o) => task.close(o), { code: 4000, reason: 'é'.repeat(62) });
    assert.deepEqual([long.ok, long.res.errMsg],
      [false, 'closeSocket:fail The message must not be greater than 123 bytes.']);

    const closed = next(task, 'Close');
    const r = await call((o) => task.close(o), { code: 4000, reason: 'bye' });
    assert.deepEqual([r.ok, r.res.errMsg], [true, 'closeSocket:ok']);
    assert.deepEqual(await closed, { code: 4000, reason: 'bye' });
    const conn = server.connections.at(-1);
    await waitFor(() => conn.closed);
    assert.deepEqual(conn.closed, { code: 4000, reason: 'bye' });

    const late = await call((o) => task.send(o), { data: 'x' });
    assert.equal(late.res.errMsg, 'sendSocketMessage:fail WebSocket is not connected');
    const again = await call((o) => task.close(o));
    assert.equal(again.res.errMsg, 'closeSocket:fail WebSocket is not connected');
  });

  test('server-initiated close is reported as {code, reason}', async () => {
    const shim = newShim();
    const { task } = await openTask(shim, server.url);
    const closed = next(task, 'Close');
    task.send({ data: 'close:4321:server says bye' });
    assert.deepEqual(await closed, { code: 4321, reason: 'server says bye' });
  });

  test('at most 5 sockets, CONNECTING ones included; a closed one frees its slot', async () => {
    const shim = newShim();
    const tasks = [];
    for (let i = 0; i < 5; i += 1) tasks.push(shim.wx.connectSocket({ url: server.url }));
    const sixth = await call((o) => shim.wx.connectSocket(o), { url: server.url });
    assert.deepEqual([sixth.ok, sixth.res.errMsg],
      [false, 'connectSocket:fail reach max websocket connect count 5']);
    assert.equal(sixth.completed.errMsg, sixth.res.errMsg);

    await next(tasks[0], 'Open');
    const closed = next(tasks[0], 'Close');
    tasks[0].close();
    await closed;
    const seventh = await call((o) => shim.wx.connectSocket(o), { url: server.url });
    assert.equal(seventh.ok, true);
  });

  test('legacy API: bound to the newest socket; re-registering replaces the listener', async () => {
    const shim = newShim();
    const { wx } = shim;
    const first = [];
    const second = [];
    wx.onSocketMessage((res) => first.push(res.data));
    wx.onSocketMessage((res) => second.push(res.data));

    const a = await openTask(shim, server.url);
    const connA = server.connections.at(-1);
    await openTask(shim, server.url); // B, now the bound socket
    const connB = server.connections.at(-1);

    assert.equal((await call((o) => wx.sendSocketMessage(o), { data: 'via-legacy' })).ok, true);
    await waitFor(() => second.includes('via-legacy'));
    assert.deepEqual(connB.received, ['via-legacy']);
    assert.deepEqual(connA.received, []);

    a.task.send({ data: 'from-a' }); // A is no longer bound: the legacy listener ignores it
    await next(a.task, 'Message');
    await tick(20);
    assert.deepEqual(first, []);
    assert.deepEqual(second, ['via-legacy']);

    const closes = [];
    wx.onSocketClose((res) => closes.push(res.code));
    assert.equal((await call((o) => wx.closeSocket(o))).res.errMsg, 'closeSocket:ok');
    await waitFor(() => closes.length === 1);
    assert.deepEqual(closes, [1000]);

    const opens = [];
    wx.onSocketOpen(() => opens.push('replaced'));
    wx.onSocketOpen(() => opens.push('C'));
    await openTask(shim, server.url);
    assert.deepEqual(opens, ['C']);
  });

  test('wx.closeSocket before onSocketOpen cannot close the socket', async () => {
    const shim = newShim();
    const task = shim.wx.connectSocket({ url: server.url });
    const opened = next(task, 'Open');
    const r = await call((o) => shim.wx.closeSocket(o));
    assert.equal(r.res.errMsg, 'closeSocket:fail WebSocket is not connected');
    await opened;
    assert.equal((await call((o) => shim.wx.sendSocketMessage(o), { data: 'still-open' })).ok, true);
  });

  test('SocketTask.close() during the handshake: error then close, asynchronously', async () => {
    const shim = newShim();
    const task = shim.wx.connectSocket({ url: server.url });
    const events = [];
    task.onError((res) => events.push(['error', res.errMsg]));
    const closed = new Promise((resolve) => task.onClose((res) => { events.push(['close', res.code]); resolve(); }));
    task.close();
    assert.deepEqual(events, []);
    await closed;
    assert.deepEqual(events, [
      ['error', 'WebSocket is closed before the connection is established.'],
      ['close', 1006],
    ]);
  });

  test('a failed connection fires onError before onClose; connectSocket itself succeeded', async () => {
    const shim = newShim();
    const unused = net.createServer();
    await new Promise((resolve) => unused.listen(0, '127.0.0.1', resolve));
    const closedPort = unused.address().port;
    await new Promise((resolve) => unused.close(resolve));
    const http400 = http.createServer((req, res) => { res.writeHead(400); res.end('no'); });
    await new Promise((resolve) => http400.listen(0, '127.0.0.1', resolve));
    const urls = [`ws://127.0.0.1:${closedPort}/`, `ws://127.0.0.1:${http400.address().port}/`];
    try {
      for (const url of urls) {
        const events = [];
        let accepted;
        const task = shim.wx.connectSocket({ url, success: (res) => { accepted = res.errMsg; } });
        task.onError((res) => events.push(['error', typeof res.errMsg]));
        const closed = new Promise((resolve) => task.onClose((res) => { events.push(['close', res]); resolve(); }));
        await closed;
        assert.equal(accepted, 'connectSocket:ok');
        assert.deepEqual(events, [['error', 'string'], ['close', { code: 1006, reason: 'abnormal closure' }]]);
      }
    } finally {
      http400.close();
    }
  });

  test('timeout: a handshake that never completes fails with errMsg "timeout"', async () => {
    const shim = newShim();
    const silent = net.createServer(() => {});
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const task = shim.wx.connectSocket({ url: `ws://127.0.0.1:${silent.address().port}/`, timeout: 150 });
      const error = next(task, 'Error');
      const closed = next(task, 'Close');
      assert.deepEqual(await error, { errMsg: 'timeout' });
      assert.equal((await closed).code, 1006);
    } finally {
      silent.close();
    }
  });

  test('background: connects refused at once, sockets cut after backgroundCutMs, foreground restores', async () => {
    const shim = newShim({ backgroundCutMs: 100 });
    const { task } = await openTask(shim, server.url);
    const conn = server.connections.at(-1);
    const silent = net.createServer(() => {}); // a handshake that is still pending at the cut
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const pending = shim.wx.connectSocket({ url: `ws://127.0.0.1:${silent.address().port}/` });
    const pendingEvents = [];
    pending.onError((res) => pendingEvents.push(['error', res.errMsg]));
    pending.onClose((res) => pendingEvents.push(['close', res]));

    const started = Date.now();
    const closed = next(task, 'Close');
    shim.enterBackground();
    const refused = await call((o) => shim.wx.connectSocket(o), { url: server.url });
    assert.deepEqual([refused.ok, refused.res.errMsg], [false, 'connectSocket:fail interrupted']);
    // Within the grace period the socket still works.
    assert.equal((await call((o) => task.send(o), { data: 'in-grace' })).ok, true);

    assert.deepEqual(await closed, { code: 0, reason: 'interrupted' });
    assert.ok(Date.now() - started >= 90, 'cut happens after backgroundCutMs');
    await waitFor(() => conn.closed);
    assert.equal(conn.closed.code, 1006, 'a TCP drop: the server got no close frame');
    const afterCut = await call((o) => shim.wx.sendSocketMessage(o), { data: 'x' });
    assert.equal(afterCut.res.errMsg, 'sendSocketMessage:fail interrupted');
    await waitFor(() => pendingEvents.length === 2);
    assert.deepEqual(pendingEvents,
      [['error', 'interrupted'], ['close', { code: 0, reason: 'interrupted' }]]);
    silent.close();

    shim.enterForeground();
    const { task: again } = await openTask(shim, server.url);
    assert.equal((await call((o) => again.send(o), { data: 'back' })).ok, true);
  });

  test('wx.onAppHide runs at enterBackground, wx.onAppShow at enterForeground; off removes', async () => {
    const shim = newShim({ backgroundCutMs: 50 });
    const seen = [];
    const hide = () => seen.push('hide');
    shim.wx.onAppHide(hide);
    shim.wx.onAppShow((res) => seen.push(`show ${res.scene}`));
    shim.enterForeground(); // not in the background: nothing to show
    shim.enterBackground();
    shim.enterBackground(); // already there
    shim.enterForeground();
    shim.wx.offAppHide(hide);
    shim.enterBackground();
    shim.enterForeground();
    assert.deepEqual(seen, ['hide', 'show 1001', 'show 1001']);
    shim.dispose();
  });

  test('returning to the foreground before the cut cancels it', async () => {
    const shim = newShim({ backgroundCutMs: 50 });
    const { task } = await openTask(shim, server.url);
    let closed = false;
    task.onClose(() => { closed = true; });
    shim.enterBackground();
    shim.enterForeground();
    await tick(120);
    assert.equal(closed, false);
  });

  test('headers the server sees: fixed Referer, MicroMessenger UA, no Origin', async () => {
    const shim = newShim();
    await openTask(shim, server.url, {
      header: { 'X-Token': 'abc', Referer: 'https://evil.example/' },
      protocols: ['chat'],
    });
    const plain = server.connections.at(-1).headers;
    assert.equal(plain.referer, `https://servicewechat.com/${APPID}/devtools/page-frame.html`);
    assert.match(plain['user-agent'], /MicroMessenger/);
    assert.equal(plain.origin, undefined);
    assert.equal(plain['x-token'], 'abc');
    assert.equal(plain['sec-websocket-protocol'], 'chat');
    assert.equal(plain['sec-websocket-extensions'], undefined, 'perMessageDeflate defaults to false');

    await openTask(shim, server.url, { perMessageDeflate: true });
    assert.match(server.connections.at(-1).headers['sec-websocket-extensions'], /permessage-deflate/);
  });

  test('URLs: ws(s) only; ws:// refused when wss is required', async () => {
    const shim = newShim();
    const plain = await call((o) => shim.wx.connectSocket(o), { url: 'http://127.0.0.1:1/' });
    assert.equal(plain.res.errMsg, 'connectSocket:fail invalid url');
    const missing = await call((o) => shim.wx.connectSocket(o), {});
    assert.equal(missing.res.errMsg,
      'connectSocket:fail parameter error: parameter.url should be String instead of Undefined;');
    const strict = newShim({ requireWss: true });
    const ws = await call((o) => strict.wx.connectSocket(o), { url: server.url });
    assert.equal(ws.res.errMsg, 'connectSocket:fail invalid url');
  });

  test('a throwing callback is reported, and the shim carries on', async () => {
    const errors = [];
    const shim = newShim({ onScriptError: (err) => errors.push(err.message) });
    const task = shim.wx.connectSocket({ url: server.url });
    task.onOpen(() => { throw new Error('boom'); });
    const opened = next(task, 'Open');
    await opened;
    assert.deepEqual(errors, ['boom']);
    assert.equal((await call((o) => task.send(o), { data: 'ok' })).ok, true);
  });
});

describe('loadMiniprogramModule', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxshim-'));
    fs.writeFileSync(path.join(dir, 'helper.js'), 'module.exports = { answer: 42 };');
    fs.writeFileSync(path.join(dir, 'probe.js'), `
      const names = ['window', 'document', 'navigator', 'location', 'XMLHttpRequest', 'WebSocket',
        'Buffer', 'process', 'global', 'Blob', 'FileReader', 'URL', 'TextEncoder', 'setImmediate',
        'wx', '__wxConfig', 'setTimeout', 'console'];
      const seen = {};
      for (const n of names) seen[n] = typeof globalThis[n];
      const attempt = (fn) => { try { return fn(); } catch (e) { return 'threw ' + e.name; } };
      module.exports = {
        bare: { window: typeof window, Buffer: typeof Buffer, process: typeof process,
                navigator: typeof navigator, XMLHttpRequest: typeof XMLHttpRequest },
        seen,
        sloppyThisHasBuffer: 'Buffer' in (function () { return this; })(),
        helper: require('./helper').answer,
        helperNoExt: require('./helper.js') === require('./helper'),
        bareRequire: attempt(() => require('ws')),
        returnThis: new Function('return this')() === globalThis,
        otherFunction: attempt(() => new Function('return 1')()),
        evalString: attempt(() => eval('1 + 1')),
        wxIsShim: wx,
      };
    `);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('browser globals undefined, Node globals hidden, require relative only, no code from strings', () => {
    const shim = new WxShim();
    const probe = shim.loadMiniprogramModule(path.join(dir, 'probe.js'));
    assert.deepEqual({ ...probe.bare }, {
      window: 'undefined', Buffer: 'undefined', process: 'undefined',
      navigator: 'undefined', XMLHttpRequest: 'undefined',
    });
    for (const n of ['window', 'document', 'navigator', 'location', 'XMLHttpRequest', 'WebSocket',
      'Buffer', 'process', 'global', 'Blob', 'FileReader', 'URL', 'TextEncoder', 'setImmediate']) {
      assert.equal(probe.seen[n], 'undefined', n);
    }
    assert.equal(probe.seen.wx, 'object');
    assert.equal(probe.seen.__wxConfig, 'object');
    assert.equal(probe.seen.setTimeout, 'function');
    assert.equal(probe.sloppyThisHasBuffer, false);
    assert.equal(probe.helper, 42);
    assert.equal(probe.helperNoExt, true);
    assert.equal(probe.bareRequire, 'threw Error');
    assert.equal(probe.returnThis, true);
    assert.equal(probe.otherFunction, 'threw EvalError');
    assert.equal(probe.evalString, 'threw EvalError');
    assert.equal(probe.wxIsShim, shim.wx);
  });

  test('weapp.socket.io and wxapp-socket-io load with the shim as their wx', () => {
    const shim = new WxShim();
    const weapp = shim.loadMiniprogramModule(
      path.join(__dirname, 'node_modules/weapp.socket.io/lib/weapp.socket.io.js'));
    assert.equal(typeof weapp, 'function');
    assert.equal(typeof weapp.Manager, 'function');
    const wxapp = shim.loadMiniprogramModule(
      path.join(__dirname, 'node_modules/wxapp-socket-io/build/index.js'));
    assert.equal(typeof wxapp, 'function');
  });
});
