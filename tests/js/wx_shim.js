'use strict';
/**
 * A `wx` shim for Node: the WebSocket part of the WeChat mini-program API, built on `ws`,
 * plus `loadMiniprogramModule(file)`, which evaluates a library file the way the
 * mini-program runtime does so that weapp.socket.io / wxapp-socket-io run unmodified.
 *
 * What is modelled, and how sure each rule is, is in the shared docs (miniprogram.md §2);
 * tests/js/README.md summarises it. In short:
 *
 *   const shim = new WxShim({ appid, backgroundCutMs });
 *   const task = shim.wx.connectSocket({ url, header, protocols, tcpNoDelay,
 *                                        perMessageDeflate, timeout, success, fail, complete });
 *   task.onOpen(cb) / onMessage(cb) / onClose(cb) / onError(cb); task.send({...}); task.close({...})
 *   shim.wx.onSocketOpen(cb) ... / sendSocketMessage / closeSocket   (legacy global API)
 *   shim.enterBackground() / shim.enterForeground()   (run wx.onAppHide / wx.onAppShow listeners)
 *   const io = shim.loadMiniprogramModule(require.resolve('weapp.socket.io'));
 *
 * Values handed to mini-program code (message ArrayBuffers) belong to the mini-program realm:
 * test with Object.prototype.toString or `instanceof shim.realm.ArrayBuffer`.
 */

const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { Console } = require('node:console');
const WebSocket = require('ws');

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const MAX_SOCKETS = 5;
const MAX_TIMEOUT_MS = 60000;
const MAX_REASON_BYTES = 123;
const DEFAULT_BACKGROUND_CUT_MS = 5000;
const DEFAULT_APPID = 'wx1234567890abcdef';
// The WeChat devtools' User-Agent shape; servers only ever look for "MicroMessenger" in it.
const USER_AGENT =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ' +
  'Chrome/107.0.0.0 Safari/537.36 wechatdevtools/1.06.2307260 MicroMessenger/8.0.5 ' +
  'Language/zh_CN webview/';

// The mini-program runtime wraps every module in a function whose parameters shadow these
// browser globals with `undefined` (that is why weapp.socket.io's UMD header can read `window`).
const MODULE_PARAMS = [
  'require', 'module', 'exports',
  'window', 'document', 'frames', 'self', 'location', 'navigator', 'localStorage', 'history',
  'Caches', 'screen', 'alert', 'confirm', 'prompt', 'fetch', 'XMLHttpRequest', 'WebSocket',
  'webkit', 'WeixinJSCore', 'Reporter', 'print',
];

const typeName = (value) => Object.prototype.toString.call(value).slice(8, -1);
const isArrayBuffer = (value) => typeName(value) === 'ArrayBuffer';

class WxShim {
  /**
   * @param {object} [options]
   * @param {string} [options.appid] appears in the fixed Referer
   * @param {number} [options.backgroundCutMs=5000] delay between enterBackground() and the cut
   * @param {boolean} [options.requireWss] only accept wss:// URLs (default: WX_SHIM_REQUIRE_WSS=1)
   * @param {(err: Error) => void} [options.onScriptError] called when a callback of
   *   mini-program code throws; the runtime reports such errors and carries on, and so do we
   */
  constructor(options = {}) {
    this.appid = options.appid || DEFAULT_APPID;
    this.backgroundCutMs = options.backgroundCutMs ?? DEFAULT_BACKGROUND_CUT_MS;
    this.requireWss = options.requireWss ?? process.env.WX_SHIM_REQUIRE_WSS === '1';
    this.onScriptError = options.onScriptError || null;
    this.referer = `https://servicewechat.com/${this.appid}/devtools/page-frame.html`;
    this.userAgent = USER_AGENT;

    this.live = new Set(); // connections not yet CLOSED: what the 5-socket limit counts
    this.legacyBound = null; // the connection the legacy global API talks to
    this.legacyListeners = { open: null, message: null, error: null, close: null };
    this.inBackground = false;
    this.suspended = false; // true once the background cut happened
    this.cutTimer = null;
    this.modules = new Map();
    this.appListeners = { show: [], hide: [] }; // wx.onAppShow / wx.onAppHide

    this.wx = this.createWx();
    this.context = this.createRealm();
    this.realm = vm.runInContext('globalThis', this.context);
  }

  createWx() {
    const legacyOn = (kind) => (cb) => {
      this.legacyListeners[kind] = typeof cb === 'function' ? cb : null;
    };
    const notConnected = (api, opts) => this.settle(api, opts, 'WebSocket is not connected');
    const appOn = (kind) => (cb) => {
      if (typeof cb === 'function') this.appListeners[kind].push(cb);
    };
    const appOff = (kind) => (cb) => {
      const list = this.appListeners[kind];
      if (cb === undefined) list.length = 0;
      else if (list.indexOf(cb) >= 0) list.splice(list.indexOf(cb), 1);
    };
    return {
      connectSocket: (opts) => this.connectSocket(opts),
      onAppShow: appOn('show'),
      onAppHide: appOn('hide'),
      offAppShow: appOff('show'),
      offAppHide: appOff('hide'),
      onSocketOpen: legacyOn('open'),
      onSocketMessage: legacyOn('message'),
      onSocketError: legacyOn('error'),
      onSocketClose: legacyOn('close'),
      sendSocketMessage: (opts = {}) =>
        this.legacyBound ? this.legacyBound.send(opts) : notConnected('sendSocketMessage', opts),
      closeSocket: (opts = {}) =>
        this.legacyBound
          ? this.legacyBound.close(opts, { legacy: true })
          : notConnected('closeSocket', opts),
    };
  }

  createRealm() {
    // A fresh context has only the language built-ins, so Buffer, process, global, Blob,
    // FileReader, URL, TextEncoder, setImmediate... do not exist for mini-program code,
    // however it looks for them (bare name, `this`, globalThis). Console goes to stderr so
    // that a peer's stdout stays a clean event stream.
    const sandbox = {
      wx: this.wx,
      // wxapp-socket-io's logger reads __wxConfig.debug on every call.
      __wxConfig: { debug: false, envVersion: 'develop', platform: 'devtools' },
      console: new Console({ stdout: process.stderr, stderr: process.stderr }),
      setTimeout, clearTimeout, setInterval, clearInterval,
    };
    const context = vm.createContext(sandbox, {
      name: 'miniprogram',
      codeGeneration: { strings: false, wasm: false },
    });
    // eval and new Function are forbidden, except `new Function('return this')`, which
    // libraries use to find the global object.
    vm.runInContext(`(() => {
      const RealFunction = Function;
      const theGlobal = globalThis;
      const isReturnThis = (args) => args.length === 1 && String(args[0]).trim() === 'return this';
      globalThis.Function = new Proxy(RealFunction, {
        construct: (target, args, newTarget) =>
          isReturnThis(args) ? () => theGlobal : Reflect.construct(target, args, newTarget),
        apply: (target, self, args) =>
          isReturnThis(args) ? () => theGlobal : Reflect.apply(target, self, args),
      });
    })()`, context);
    return context;
  }

  /** A copy of `bytes` as an ArrayBuffer of the mini-program realm. */
  toArrayBuffer(bytes) {
    const ab = new this.realm.ArrayBuffer(bytes.byteLength);
    new Uint8Array(ab).set(bytes);
    return ab;
  }

  /**
   * Evaluate `file` as a mini-program module and return its module.exports. `require` inside
   * it resolves relative paths only, as in the runtime (no node_modules lookup).
   */
  loadMiniprogramModule(file) {
    const abs = path.resolve(file);
    const cached = this.modules.get(abs);
    if (cached) return cached.exports;
    const module = new this.realm.Object();
    module.exports = new this.realm.Object();
    this.modules.set(abs, module);
    const requireFrom = (name) => {
      if (!/^\.\.?\//.test(name)) throw new Error(`module "${name}" is not defined`);
      const target = path.resolve(path.dirname(abs), name);
      return this.loadMiniprogramModule(target.endsWith('.js') ? target : `${target}.js`);
    };
    const factory = vm.compileFunction(fs.readFileSync(abs, 'utf8'), MODULE_PARAMS, {
      parsingContext: this.context,
      filename: abs,
    });
    factory.call(undefined, requireFrom, module, module.exports);
    return module.exports;
  }

  connectSocket(opts) {
    const options = opts && typeof opts === 'object' ? opts : {};
    const refuse = (tail) => {
      this.settle('connectSocket', options, tail);
      return new SocketTask(Connection.inert(this));
    };
    if (typeof options.url !== 'string') {
      return refuse(
        `parameter error: parameter.url should be String instead of ${typeName(options.url)};`,
      );
    }
    if (this.inBackground) return refuse('interrupted');
    if (this.live.size >= MAX_SOCKETS) {
      return refuse(`reach max websocket connect count ${MAX_SOCKETS}`);
    }
    const scheme = /^(wss?):\/\//i.exec(options.url);
    if (!scheme || (this.requireWss && scheme[1].toLowerCase() !== 'wss')) {
      return refuse('invalid url');
    }
    if (options.header != null && typeof options.header !== 'object') {
      return refuse(
        `parameter error: parameter.header should be Object instead of ${typeName(options.header)};`,
      );
    }
    const conn = new Connection(this);
    this.live.add(conn);
    this.legacyBound = conn;
    this.settle('connectSocket', options);
    // Dial after `success` has run: the outcome of the call always precedes the socket's events.
    setImmediate(() => conn.start(options));
    return new SocketTask(conn);
  }

  /** wx.onAppHide listeners run, then ~backgroundCutMs later every socket is cut. */
  enterBackground({ cutMs } = {}) {
    if (this.inBackground) return;
    this.inBackground = true;
    for (const cb of [...this.appListeners.hide]) this.invoke(cb, {});
    this.cutTimer = setTimeout(() => {
      this.cutTimer = null;
      this.suspended = true;
      for (const conn of [...this.live]) conn.cut();
    }, cutMs ?? this.backgroundCutMs);
  }

  /** Back in the foreground: sockets may be opened again, then wx.onAppShow listeners run. */
  enterForeground() {
    const wasBackground = this.inBackground;
    this.inBackground = false;
    this.suspended = false;
    clearTimeout(this.cutTimer);
    this.cutTimer = null;
    if (wasBackground) {
      for (const cb of [...this.appListeners.show]) this.invoke(cb, { scene: 1001, path: '', query: {} });
    }
  }

  /** Drop every socket without callbacks (test teardown). */
  dispose() {
    this.appListeners.show.length = 0;
    this.appListeners.hide.length = 0;
    this.enterForeground();
    for (const conn of [...this.live]) conn.drop();
  }

  /** Report an API call's outcome asynchronously, as the runtime does: success|fail, then complete. */
  settle(api, opts, failTail) {
    const res = { errMsg: failTail === undefined ? `${api}:ok` : `${api}:fail ${failTail}` };
    const outcome = failTail === undefined ? opts.success : opts.fail;
    setImmediate(() => {
      this.invoke(outcome, res);
      this.invoke(opts.complete, res);
    });
  }

  invoke(cb, arg) {
    if (typeof cb !== 'function') return;
    try {
      cb(arg);
    } catch (err) {
      // The runtime logs a script error and keeps running; so do we.
      process.stderr.write(`wx_shim: callback threw: ${err && err.stack}\n`);
      if (this.onScriptError) this.onScriptError(err);
    }
  }
}

/** One native socket behind a SocketTask. */
class Connection {
  static inert(shim) {
    const conn = new Connection(shim);
    conn.state = CLOSED;
    return conn;
  }

  constructor(shim) {
    this.shim = shim;
    this.state = CONNECTING;
    this.ws = null;
    this.timer = null;
    this.listeners = { open: [], message: [], error: [], close: [] };
  }

  start({ url, header, protocols, tcpNoDelay, perMessageDeflate, timeout }) {
    if (this.state !== CONNECTING) return; // closed or cut before dialing
    const shim = this.shim;
    const headers = {};
    for (const [name, value] of Object.entries(header || {})) {
      if (value != null && name.toLowerCase() !== 'referer') headers[name] = String(value);
    }
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'user-agent')) {
      headers['User-Agent'] = shim.userAgent;
    }
    headers.Referer = shim.referer; // fixed by the runtime, cannot be overridden
    const profile = { fetchStart: Date.now() };
    let responseHeaders = {};
    // No `origin` option: a mini program sends no Origin header.
    const ws = new WebSocket(url, Array.isArray(protocols) ? protocols : undefined, {
      headers,
      perMessageDeflate: perMessageDeflate === true,
      finishRequest: (req) => {
        req.on('socket', (socket) => {
          profile.connectStart = Date.now();
          socket.setNoDelay(tcpNoDelay === true);
          socket.once('connect', () => { profile.connectEnd = Date.now(); });
        });
        req.end();
      },
    });
    this.ws = ws;
    const limit = typeof timeout === 'number' && timeout > 0
      ? Math.min(timeout, MAX_TIMEOUT_MS) : MAX_TIMEOUT_MS;
    this.timer = setTimeout(() => this.abort('timeout', 1006, 'abnormal closure'), limit);

    ws.on('upgrade', (res) => { responseHeaders = res.headers; });
    ws.on('open', () => {
      clearTimeout(this.timer);
      this.state = OPEN;
      const now = Date.now();
      profile.handshakeCost = now - (profile.connectEnd ?? profile.fetchStart);
      profile.cost = now - profile.fetchStart;
      this.dispatch('open', { header: responseHeaders, profile });
    });
    ws.on('message', (data, isBinary) => {
      this.dispatch('message', {
        data: isBinary ? shim.toArrayBuffer(data) : data.toString('utf8'),
      });
    });
    // ws reports a failed handshake as 'error' then 'close', the order mini programs see.
    ws.on('error', (err) => this.dispatch('error', { errMsg: err.message }));
    ws.on('close', (code, reason) => {
      this.finish();
      this.dispatch('close', {
        code,
        reason: reason.length ? reason.toString('utf8') : code === 1006 ? 'abnormal closure' : '',
      });
    });
  }

  /** Forget the ws object and free the slot; events from here on come from us only. */
  finish() {
    clearTimeout(this.timer);
    this.state = CLOSED;
    this.shim.live.delete(this);
  }

  /** Kill the TCP connection (no close frame) without telling the mini program. */
  drop() {
    if (this.state === CLOSED) return;
    if (this.ws) {
      this.ws.removeAllListeners();
      this.ws.on('error', () => {}); // terminate() during the handshake still emits one
      this.ws.terminate();
    }
    this.finish();
  }

  /** Fail a handshake locally: error, then close, never inside the caller's own call. */
  abort(errMsg, code, reason) {
    if (this.state !== CONNECTING) return;
    this.drop();
    setImmediate(() => {
      this.dispatch('error', { errMsg });
      this.dispatch('close', { code, reason });
    });
  }

  /** The background cut: TCP drop, then onClose {code: 0, reason: "interrupted"}. */
  cut() {
    if (this.state === CONNECTING) {
      this.abort('interrupted', 0, 'interrupted');
      return;
    }
    this.drop();
    this.dispatch('close', { code: 0, reason: 'interrupted' });
  }

  on(kind, cb) {
    if (typeof cb === 'function') this.listeners[kind].push(cb);
  }

  dispatch(kind, payload) {
    const shim = this.shim;
    for (const cb of this.listeners[kind]) shim.invoke(cb, payload);
    if (shim.legacyBound === this) shim.invoke(shim.legacyListeners[kind], payload);
  }

  send(opts = {}) {
    const shim = this.shim;
    const api = 'sendSocketMessage';
    if (shim.suspended) return shim.settle(api, opts, 'interrupted');
    if (this.state !== OPEN) return shim.settle(api, opts, 'WebSocket is not connected');
    const { data } = opts;
    let payload;
    if (typeof data === 'string') payload = data;
    else if (isArrayBuffer(data)) payload = Buffer.from(new Uint8Array(data)); // a copy
    else {
      // Only String and ArrayBuffer are documented: typed arrays and Buffers are refused.
      return shim.settle(api, opts,
        `parameter error: parameter.data should be String/ArrayBuffer instead of ${typeName(data)};`);
    }
    this.ws.send(payload, { binary: typeof data !== 'string' }, (err) => {
      if (err) shim.settle(api, opts, err.message);
      else shim.settle(api, opts);
    });
  }

  close(opts = {}, { legacy = false } = {}) {
    const shim = this.shim;
    const api = 'closeSocket';
    if (shim.suspended) return shim.settle(api, opts, 'interrupted');
    const code = opts.code === undefined ? 1000 : opts.code;
    const reason = opts.reason === undefined ? '' : String(opts.reason);
    // The browser rule (the devtools run Chromium), with Chromium's wording.
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      return shim.settle(api, opts,
        `The code must be either 1000, or between 3000 and 4999. ${code} is neither.`);
    }
    if (Buffer.byteLength(reason) > MAX_REASON_BYTES) {
      return shim.settle(api, opts, 'The message must not be greater than 123 bytes.');
    }
    // wx.closeSocket before onSocketOpen cannot close the socket (documented).
    if (this.state === CLOSED || (legacy && this.state === CONNECTING)) {
      return shim.settle(api, opts, 'WebSocket is not connected');
    }
    if (this.state === CONNECTING) {
      // SocketTask.close() during the handshake: the browser's abort.
      this.abort('WebSocket is closed before the connection is established.', 1006,
        'abnormal closure');
    } else if (this.state === OPEN) {
      this.state = CLOSING;
      this.ws.close(code, reason);
    }
    shim.settle(api, opts);
  }
}

/** What wx.connectSocket returns: only the documented surface. */
class SocketTask {
  #conn;

  constructor(conn) {
    this.#conn = conn;
  }

  send(opts) { this.#conn.send(opts); }

  close(opts) { this.#conn.close(opts); }

  onOpen(cb) { this.#conn.on('open', cb); }

  onMessage(cb) { this.#conn.on('message', cb); }

  onError(cb) { this.#conn.on('error', cb); }

  onClose(cb) { this.#conn.on('close', cb); }
}

module.exports = { WxShim, MAX_SOCKETS };
