/*! wxio-client 0.1.0 | MIT | built from clients/js/src by build.js: do not edit */
(function (root, factory) {
  if (typeof module === 'object' && module && typeof module.exports === 'object') {
    module.exports = factory();
  } else if (typeof define === 'function' && define.amd) {
    define([], factory);
  } else {
    root.wxio = factory();
  }
}(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function () {
  'use strict';
  var defs = {
    "client": function (module, exports, require) {
      /**
       * The wxio client: one logical connection to the routing core that survives socket losses.
       *
       *   const client = connect('wss://example.com', { credentials: async () => fetchCreds() });
       *   client.on('exchange', (msg) => ...);
       *   const result = await client.send(otherClientId, { text: 'hi' });
       *
       * Transports: the raw JSON WebSocket endpoint (`/ws`) through `wx.connectSocket` in a mini
       * program or `WebSocket` in a browser; or a socket.io client the app passes in (`io`).
       *
       * What it does on its own: signs every message with the current credentials (refreshing them
       * before the server's window runs out, and once more on an `expired` denial); with a token,
       * sends `refresh` with a new one before the token's `exp` (and at once on `deny expired`),
       * reconnecting with fresh credentials if that fails; reconnects with
       * exponential backoff and jitter; on a reconnect claims its old client ids with
       * `reConnectAndUpdates` so that messages sent to them reach it; acknowledges every inbox
       * delivery (and every message whose sender asked for a delivery receipt) and drops duplicates
       * by `msgId`; closes the socket when a mini program goes to the background (so messages go to
       * the inbox instead of a dead socket) and reconnects on return.
       *
       * Delivery receipts: `send(target, payload, { receipt: true })` asks the server to tell this
       * client when the target acknowledges the message: a 'receipt' event, and `receipt(msgId)`
       * resolves (a client with a user id gets it also after a reconnect: it is kept in its inbox).
       */

      const E = require('./envelope');

      const DEFAULTS = {
        transport: 'ws', // 'ws' (raw JSON WebSocket) or 'socketio' (needs options.io)
        path: '/ws', // raw endpoint path, used when the URL has none
        reconnect: true,
        minDelay: 500, // first reconnect delay (ms), doubled each attempt...
        maxDelay: 15000, // ...up to this
        factor: 2,
        jitter: 0.5, // +-50% randomisation, so that clients cut together do not return together
        maxAttempts: Infinity,
        connectTimeout: 15000,
        requestTimeout: 10000, // send/broadcast answer deadline
        credentialsMaxAge: 240000, // refresh credentials after this (the server's window is 300 s)
        refreshLead: 5000, // token connections: refresh this long before exp (at least 20% of the
        // token's remaining lifetime, at most half of it)
        dedupe: 1000, // msgIds remembered for de-duplication (and receipts for receipt())
        outboxSize: 100, // sends kept while disconnected
        pingInterval: 25000, // raw transport: ping after this much silence (0: off)
        pingTimeout: 10000, // ...and give the socket up if nothing answers in this time
        pauseInBackground: true, // wx.onAppHide closes the socket, wx.onAppShow reconnects
      };

      // Close codes of the raw endpoint (docs/guide.md) and the reasons they stand for.
      const CLOSE_REASONS = {
        4001: 'bad_signature',
        4002: 'expired',
        4003: 'unknown_app',
        4004: 'not_allowed',
        4005: 'malformed',
        4008: 'rate_limited',
        4009: 'too_large',
        4013: 'unavailable',
      };
      const CLOSE_CODES = {};
      Object.keys(CLOSE_REASONS).forEach((code) => { CLOSE_CODES[CLOSE_REASONS[code]] = Number(code); });
      // Refusals that the same credentials source will not fix by retrying.
      const FATAL = { bad_signature: true, unknown_app: true, not_allowed: true, malformed: true };
      const MAX_OLD_IDS = 32; // the server looks at 32 claimed ids at most

      class WxioError extends Error {
        constructor(reason, message, envelope) {
          super(message || reason);
          this.name = 'WxioError';
          this.reason = reason;
          this.envelope = envelope || null;
        }
      }

      /** A tiny event emitter; a listener that throws is reported on the console, never breaks us. */
      class Emitter {
        constructor() {
          this.listeners = {};
        }

        on(event, fn) {
          (this.listeners[event] || (this.listeners[event] = [])).push(fn);
          return () => this.off(event, fn);
        }

        once(event, fn) {
          const off = this.on(event, (arg) => {
            off();
            fn(arg);
          });
          return off;
        }

        off(event, fn) {
          const list = this.listeners[event];
          if (!list) return;
          const i = list.indexOf(fn);
          if (i >= 0) list.splice(i, 1);
        }

        emit(event, arg) {
          const list = (this.listeners[event] || []).slice();
          for (let i = 0; i < list.length; i += 1) {
            try {
              list[i](arg);
            } catch (err) {
              if (typeof console !== 'undefined') console.error(`wxio: a '${event}' listener threw`, err);
            }
          }
        }
      }

      /** msgIds seen recently, oldest forgotten first. */
      class Seen {
        constructor(size) {
          this.size = size;
          this.ids = new Set();
        }

        /** True if `id` was seen already; remembers it otherwise. */
        check(id) {
          if (this.ids.has(id)) return true;
          this.ids.add(id);
          if (this.ids.size > this.size) this.ids.delete(this.ids.values().next().value);
          return false;
        }
      }

      const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

      /** A base64url (or base64) string decoded as UTF-8 text; needs no atob or TextDecoder. */
      function base64urlDecode(text) {
        const s = String(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
        let value = 0;
        let bits = 0;
        let out = '';
        for (let i = 0; i < s.length; i += 1) {
          const v = B64URL.indexOf(s.charAt(i));
          if (v < 0) throw new Error('not base64url');
          value = (value << 6) | v;
          bits += 6;
          if (bits >= 8) {
            bits -= 8;
            out += `%${(0x100 | ((value >> bits) & 0xff)).toString(16).slice(1)}`;
            value &= (1 << bits) - 1;
          }
        }
        return decodeURIComponent(out);
      }

      /** The `exp` claim (seconds since the epoch) of a JWT, read without verifying it; or null. */
      function tokenExp(token) {
        try {
          const claims = JSON.parse(base64urlDecode(String(token).split('.')[1]));
          const exp = claims && claims.exp;
          return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
        } catch (err) {
          return null;
        }
      }

      function isToken(creds) {
        return Boolean(creds) && creds.token !== undefined && creds.token !== null && creds.token !== '';
      }

      /**
       * When credentials `{token, exp?}` run out, in ms since the epoch (server time): `exp` as the
       * credentials callback gave it (seconds, like a JWT's; a value over 1e12 is taken as ms), else
       * the token's own `exp` claim; null for other credentials or a token without one.
       */
      function credsExpiry(creds) {
        if (!isToken(creds)) return null;
        const given = creds.exp !== undefined && creds.exp !== null ? Number(creds.exp) : NaN;
        if (Number.isFinite(given) && given > 0) return given > 1e12 ? given : given * 1000;
        const exp = tokenExp(creds.token);
        return exp === null ? null : exp * 1000;
      }

      /**
       * How long to wait before refreshing a token with `remaining` ms to live: refresh `lead` ms
       * before it runs out, where lead is at least 20% of `remaining` and at most half of it, but
       * otherwise `minLead` (a 3 s token refreshes after 1.5 s; a 1 h token after 48 min).
       */
      function refreshDelay(remaining, minLead) {
        if (!(remaining > 0)) return 0;
        const lead = Math.max(remaining * 0.2, Math.min(minLead, remaining * 0.5));
        return Math.max(0, Math.min(0x7fffffff, Math.round(remaining - lead)));
      }

      /** Credentials as they go on the wire: `exp` is for the client alone. */
      function wireCreds(creds) {
        const wire = Object.assign({}, creds);
        delete wire.exp;
        return wire;
      }

      const URL_RE = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?/i;

      /** The raw endpoint's URL: http(s) becomes ws(s), the path defaults to `path`. */
      function rawUrl(url, path, query) {
        const m = URL_RE.exec(url);
        if (!m) throw new WxioError('malformed', `not an absolute URL: ${url}`);
        const scheme = { http: 'ws', https: 'wss' }[m[1].toLowerCase()] || m[1].toLowerCase();
        const p = m[3] && m[3] !== '/' ? m[3] : path;
        const parts = [];
        Object.keys(query).forEach((k) => {
          const v = query[k];
          if (v !== undefined && v !== null && v !== '') {
            parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
          }
        });
        const existing = m[4] ? m[4].slice(1) : '';
        const qs = [existing, parts.join('&')].filter(Boolean).join('&');
        return `${scheme}://${m[2]}${p}${qs ? `?${qs}` : ''}`;
      }

      function globalWx() {
        // eslint-disable-next-line no-undef
        return typeof wx === 'object' && wx && typeof wx.connectSocket === 'function' ? wx : null;
      }

      function globalWebSocket() {
        return typeof WebSocket === 'function' ? WebSocket : null;
      }

      /** A raw socket over wx.connectSocket; handlers: open(), message(text), close(code, reason). */
      function openWxSocket(wxApi, url, timeout, h) {
        let done = false;
        const closed = (code, reason) => {
          if (done) return;
          done = true;
          h.close(code, reason);
        };
        const task = wxApi.connectSocket({
          url,
          timeout,
          // A refused call (background, 5-socket limit, bad URL) may never fire the task's events.
          fail: (res) => closed(1006, (res && res.errMsg) || 'connectSocket:fail'),
        });
        if (!task) throw new WxioError('not_allowed', 'wx.connectSocket returned no SocketTask');
        // Listen at once: events may come right after the call (WeChat's own advice).
        task.onOpen(() => h.open());
        task.onMessage((res) => {
          if (typeof res.data === 'string') h.message(res.data);
        });
        task.onError(() => {}); // onClose follows
        task.onClose((res) => closed(res && res.code, res && res.reason));
        return {
          send: (text) => task.send({ data: text, fail: () => {} }),
          close: (code, reason) => {
            done = true;
            task.close({ code, reason, fail: () => {} });
          },
        };
      }

      function openWebSocket(WS, url, h) {
        let done = false;
        const ws = new WS(url);
        ws.onopen = () => h.open();
        ws.onmessage = (ev) => {
          if (typeof ev.data === 'string') h.message(ev.data);
        };
        ws.onerror = () => {};
        ws.onclose = (ev) => {
          if (!done) {
            done = true;
            h.close(ev.code, ev.reason);
          }
        };
        return {
          send: (text) => ws.send(text),
          close: (code, reason) => {
            done = true;
            try {
              ws.close(code, reason);
            } catch (err) {
              // already closing
            }
          },
        };
      }

      class Client extends Emitter {
        /**
         * @param {string} url  the server, e.g. `wss://example.com` (raw: `/ws` is added when the
         *   URL has no path; socketio: passed to `io`)
         * @param {object} options  see README.md; `credentials` is required
         */
        constructor(url, options) {
          super();
          const opts = Object.assign({}, DEFAULTS, options || {});
          if (!opts.credentials) throw new WxioError('malformed', 'options.credentials is required');
          if (opts.transport === 'socketio' && typeof opts.io !== 'function') {
            throw new WxioError('malformed', "transport 'socketio' needs options.io (the io function)");
          }
          this.url = url;
          this.options = opts;
          this.wx = opts.wx || (opts.transport === 'ws' && !opts.WebSocket ? globalWx() : null);
          this.WebSocket = opts.WebSocket || globalWebSocket();
          if (opts.transport === 'ws' && !this.wx && !this.WebSocket) {
            throw new WxioError('not_allowed', 'no wx.connectSocket and no WebSocket: pass options.WebSocket');
          }
          /** The current client id (null until connected). */
          this.id = null;
          /** The user id the server gave this connection (a token's `sub`); null without one. */
          this.userId = null;
          this.credUserId = null; // userId of signed credentials: used if the server names none
          this.skew = 0; // server clock minus ours (ms), from the server's timestamps
          this.refreshing = null; // a refresh under way (a promise)
          this.freshCreds = false; // the next dial fetches new credentials
          /** 'connecting' | 'open' | 'closed' */
          this.state = 'closed';
          this.oldIds = []; // most recent first
          this.seen = new Seen(opts.dedupe);
          this.receipts = new Map(); // msgId -> the receipt that came (the last `dedupe` of them)
          this.receiptWaiters = new Map(); // msgId -> [{resolve, reject, timer}]
          /** Counters: deliveries received, duplicates dropped, acks sent, reconnects. */
          this.stats = { received: 0, duplicates: 0, acks: 0, reconnects: 0 };
          this.creds = null;
          this.credsAt = 0;
          this.conn = null; // the current socket (ws) or socket.io socket wrapper
          this.pending = []; // raw transport: requests waiting for their answer, in order
          this.outbox = []; // requests made while disconnected
          this.attempt = 0;
          this.running = false; // wanted connected (false after close() or a fatal refusal)
          this.paused = false; // in the background
          this.timers = {};
          this.hooks = [];
          if (opts.pauseInBackground && this.wx && typeof this.wx.onAppHide === 'function') {
            const hide = () => this.pause();
            const show = () => this.resume();
            this.wx.onAppHide(hide);
            this.wx.onAppShow(show);
            this.hooks.push(() => {
              if (typeof this.wx.offAppHide === 'function') this.wx.offAppHide(hide);
              if (typeof this.wx.offAppShow === 'function') this.wx.offAppShow(show);
            });
          }
        }

        get connected() {
          return this.state === 'open';
        }

        /** Start connecting (connect() does this for you). */
        open() {
          if (this.running) return this;
          this.running = true;
          this.attempt = 0;
          this.dial();
          return this;
        }

        /** Disconnect for good: no reconnect, pending requests are rejected. */
        close() {
          this.running = false;
          this.clearTimer('retry');
          this.hooks.forEach((unhook) => unhook());
          this.hooks = [];
          this.drop(1000, 'client close');
          this.failOutbox(new WxioError('closed', 'client closed'));
          const closed = new WxioError('closed', 'client closed');
          this.receiptWaiters.forEach((waiters) => waiters.forEach((w) => {
            clearTimeout(w.timer);
            w.reject(closed);
          }));
          this.receiptWaiters.clear();
        }

        /** The app went to the background: close now, so messages wait in the inbox. */
        pause() {
          if (this.paused) return;
          this.paused = true;
          this.clearTimer('retry');
          this.drop(1000, 'background');
        }

        /** Back in the foreground: reconnect at once. */
        resume() {
          if (!this.paused) return;
          this.paused = false;
          if (this.running && this.state === 'closed') {
            this.attempt = 0;
            this.dial();
          }
        }

        /**
         * Send `payload` to the client `target`. Resolves with the server's result
         * `{status: 'delivered'|'forwarded'|'queued', msgId, delivered, forwarded, dropped, target}`;
         * rejects with a WxioError whose `reason` is the deny reason, 'timeout', 'disconnected' or
         * 'closed'. `opts.receipt`: ask for a delivery receipt (see receipt()).
         */
        send(target, payload, opts) {
          if (typeof target !== 'string' || !target) {
            return Promise.reject(new WxioError('malformed', 'target must be a client id'));
          }
          const meta = { target };
          if (opts && opts.receipt) meta.receipt = true;
          return this.request(E.SEND_TO_OTHERS, payload, meta, opts);
        }

        /**
         * The delivery receipt of the message `msgId` (a send with `{receipt: true}`): resolves with
         * `{msgId, status: 'acked', ackedAt, target}` when the target acknowledges it (at once if it
         * came already); rejects with WxioError 'timeout' after `opts.timeout` ms if given, or
         * 'closed' when the client is closed.
         */
        receipt(msgId, opts) {
          const got = this.receipts.get(msgId);
          if (got) return Promise.resolve(got);
          if (!this.running) return Promise.reject(new WxioError('closed', 'client is closed'));
          return new Promise((resolve, reject) => {
            const waiter = { resolve, reject, timer: null };
            const waiters = this.receiptWaiters.get(msgId) || [];
            waiters.push(waiter);
            this.receiptWaiters.set(msgId, waiters);
            if (opts && opts.timeout) {
              waiter.timer = setTimeout(() => {
                const left = (this.receiptWaiters.get(msgId) || []).filter((w) => w !== waiter);
                if (left.length) this.receiptWaiters.set(msgId, left);
                else this.receiptWaiters.delete(msgId);
                reject(new WxioError('timeout', `no receipt for ${msgId} in ${opts.timeout} ms`));
              }, opts.timeout);
            }
          });
        }

        /**
         * Token connections: fetch new credentials now and send `refresh` with their token. Resolves
         * with the `refreshed` envelope; if it fails, the client reconnects with fresh credentials.
         * (The client does this on its own before the token's `exp`.)
         */
        refresh() {
          if (this.refreshing) return this.refreshing;
          const conn = this.conn;
          if (!conn || !isToken(this.creds)) {
            return Promise.reject(new WxioError('not_allowed', 'not connected with a token'));
          }
          this.clearTimer('refresh');
          const timeout = this.options.requestTimeout;
          const p = this.credentials(true).then((creds) => {
            if (conn !== this.conn) throw new WxioError('disconnected', 'connection lost before refreshing');
            if (!isToken(creds)) throw new WxioError('malformed', 'credentials() returned no token to refresh with');
            return new Promise((resolve, reject) => this.transmit({
              action: E.REFRESH, payload: { token: String(creds.token) }, meta: {}, resolve, reject,
              retried: true, timer: null, timeout,
            }));
          }).then((reply) => {
            const meta = (reply && reply.meta) || {};
            const payload = (reply && reply.data && reply.data.payload) || {};
            if (!reply || !reply.data || reply.data.action !== E.REFRESHED) {
              throw new WxioError('malformed', 'refresh got no refreshed answer', reply);
            }
            this.clock(meta);
            const exp = typeof payload.exp === 'number' ? payload.exp * 1000 : credsExpiry(this.creds);
            if (conn === this.conn) this.scheduleRefresh(exp);
            this.emit('refreshed', { exp: exp === null ? null : exp / 1000 });
            return reply;
          });
          this.refreshing = p;
          p.then(() => { this.refreshing = null; }, (err) => {
            this.refreshing = null;
            if (conn !== this.conn) return;
            this.emit('error', err);
            this.reconnectNow(`refresh failed: ${err && (err.reason || err.message)}`);
          });
          return p;
        }

        /** Send `payload` to every other client of the app (the app must allow client broadcasts). */
        broadcast(payload, opts) {
          return this.request(E.BROADCAST, payload, {}, opts);
        }

        // -- requests ---------------------------------------------------------------------------------

        request(action, payload, meta, opts) {
          const timeout = (opts && opts.timeout) || this.options.requestTimeout;
          return new Promise((resolve, reject) => {
            const req = { action, payload, meta, resolve, reject, retried: false, timer: null, timeout };
            if (this.state === 'open') {
              this.dispatch(req);
            } else if (!this.running) {
              reject(new WxioError('closed', 'client is closed'));
            } else if (this.outbox.length >= this.options.outboxSize) {
              reject(new WxioError('rate_limited', 'too many messages waiting for a connection'));
            } else {
              this.outbox.push(req);
            }
          });
        }

        /** Send now if connected, else keep it for the next connection. */
        dispatch(req) {
          if (this.state === 'open') this.transmit(req);
          else if (this.running) this.outbox.unshift(req);
          else req.reject(new WxioError('closed', 'client is closed'));
        }

        /** Sign and send one request on the current socket; its answer settles it (see answer()). */
        transmit(req) {
          const conn = this.conn;
          this.signedMeta(req.meta).then((meta) => {
            if (!conn || conn !== this.conn) {
              req.reject(new WxioError('disconnected', 'connection lost before sending'));
              return;
            }
            const envelope = E.parseMsg(req.action, req.payload === undefined ? {} : req.payload, meta);
            req.timer = setTimeout(() => {
              this.forget(req);
              req.reject(new WxioError('timeout', `no answer to ${req.action} in ${req.timeout} ms`));
            }, req.timeout);
            if (this.options.transport === 'socketio') {
              conn.emit(E.REQUEST_MESSAGE, envelope, (reply) => this.answer(req, reply, true));
            } else {
              this.pending.push(req);
              conn.send(JSON.stringify(envelope));
            }
          }, (err) => req.reject(err));
        }

        forget(req) {
          clearTimeout(req.timer);
          const i = this.pending.indexOf(req);
          if (i >= 0) this.pending.splice(i, 1);
        }

        /** Settle `req` with the envelope that answers it (`direct`: a socket.io ack callback). */
        answer(req, envelope, direct) {
          this.forget(req);
          const data = (envelope && envelope.data) || {};
          const payload = data.payload || {};
          if (data.action === E.DENY) {
            if (direct) this.emit('deny', { reason: payload.reason, message: payload.message, envelope });
            if (payload.reason === 'expired' && !req.retried) {
              req.retried = true;
              if (isToken(this.creds) && this.conn) {
                // The token ran out: refresh it, then try once more (on this connection or the next).
                this.refresh().then(() => this.dispatch(req), () => this.dispatch(req));
                return;
              }
              // The credentials aged out: fetch new ones and try once more.
              this.credsAt = 0;
              if (this.conn) this.transmit(req);
              else this.dispatch(req);
              return;
            }
            req.reject(new WxioError(payload.reason || 'deny', payload.message, envelope));
          } else if (data.action === E.RESULT) {
            const result = this.resultOf(envelope);
            if (direct) this.emit('result', result);
            req.resolve(result);
          } else {
            req.resolve(envelope);
          }
        }

        resultOf(envelope) {
          const meta = envelope.meta || {};
          const p = envelope.data.payload || {};
          return {
            status: p.status,
            msgId: p.msgId || meta.msgId,
            guarantee: p.guarantee || null,
            delivered: p.delivered,
            forwarded: p.forwarded || 0,
            dropped: p.dropped || [],
            target: meta.target || null,
            envelope,
          };
        }

        failOutbox(err) {
          const waiting = this.outbox.splice(0);
          waiting.forEach((req) => req.reject(err));
        }

        // -- credentials --------------------------------------------------------------------------------

        /** Server time (ms), as far as its timestamps tell. */
        serverNow() {
          return Date.now() + this.skew;
        }

        /** Learn the server's clock from a reply's `meta.timestamp`. */
        clock(meta) {
          if (meta && typeof meta.timestamp === 'number' && Number.isFinite(meta.timestamp)) {
            this.skew = meta.timestamp - Date.now();
          }
        }

        /** Whether cached credentials will do for a new connection or a signature. */
        usable(creds) {
          const exp = credsExpiry(creds);
          if (exp !== null) return exp - this.serverNow() > 1000;
          return Date.now() - this.credsAt < this.options.credentialsMaxAge;
        }

        credentials(force) {
          if (!force && this.creds && this.usable(this.creds)) return Promise.resolve(this.creds);
          const source = this.options.credentials;
          // A callback that throws is a rejected promise like one that rejects.
          return new Promise((resolve) => resolve(typeof source === 'function' ? source() : source)).then((creds) => {
            if (!creds || typeof creds !== 'object') throw new WxioError('malformed', 'credentials() returned nothing');
            this.creds = Object.assign({}, creds);
            if (!isToken(this.creds) && this.creds.userId === undefined && this.options.userId !== undefined) {
              this.creds.userId = this.options.userId;
            }
            this.credsAt = Date.now();
            return this.creds;
          });
        }

        /** meta for a request: the mobile-sdk's metaData (app, timestamp, sign, client, userId). */
        signedMeta(extra) {
          if (isToken(this.creds)) {
            // The token authenticates the connection: messages carry no signature and no user id.
            const meta = {};
            if (this.creds.app !== undefined && this.creds.app !== null) meta.app = this.creds.app;
            if (this.id) meta.client = this.id;
            return Promise.resolve(Object.assign(meta, extra));
          }
          return this.credentials(false).then((c) => {
            const meta = {};
            ['app', 'timestamp', 'sign', 'nonce', 'token'].forEach((k) => {
              if (c[k] !== undefined && c[k] !== null) meta[k] = c[k];
            });
            if (this.id) meta.client = this.id;
            if (this.userId) meta.userId = this.userId;
            return Object.assign(meta, extra);
          });
        }

        // -- connection lifecycle ----------------------------------------------------------------------

        dial() {
          if (!this.running || this.paused || this.state !== 'closed') return;
          this.state = 'connecting';
          const fresh = this.lastReason === 'expired' || this.freshCreds;
          this.freshCreds = false;
          this.credentials(fresh).then((creds) => {
            if (!this.running || this.paused || this.state !== 'connecting') {
              if (this.state === 'connecting') this.state = 'closed';
              return;
            }
            // The user id is the server's to say (the greeting); signed credentials name it too.
            this.userId = null;
            this.credUserId = !isToken(creds) && creds.userId !== undefined && creds.userId !== null
              && creds.userId !== '' ? String(creds.userId) : null;
            const wire = wireCreds(creds);
            const h = this.handlers();
            try {
              this.conn = this.options.transport === 'socketio' ? this.openSocketIo(wire, h) : this.openRaw(wire, h);
            } catch (err) {
              this.state = 'closed';
              this.emit('error', err);
              this.conn = null;
              this.retry(1006, err.message);
              return;
            }
            h.bind(this.conn);
            this.setTimer('connect', this.options.connectTimeout, () => h.close(1006, 'connect timeout'));
          }, (err) => {
            this.state = 'closed';
            this.emit('error', err);
            this.retry(1006, `credentials: ${err && err.message}`);
          });
        }

        /** Callbacks for one socket; they do nothing once that socket is no longer current. */
        handlers() {
          let conn = null;
          const current = () => conn !== null && conn === this.conn;
          return {
            bind: (c) => { conn = c; },
            open: () => {},
            message: (text) => {
              if (!current()) return;
              let envelope;
              try {
                envelope = JSON.parse(text);
              } catch (err) {
                return;
              }
              this.onEnvelope(envelope);
            },
            greeting: (id, meta) => { if (current()) this.onGreeting(id, meta); },
            envelope: (envelope, ack) => {
              if (!current()) return;
              this.onEnvelope(envelope);
              if (typeof ack === 'function') {
                this.stats.acks += 1;
                ack();
              }
            },
            close: (code, reason) => {
              if (!current()) return;
              const c = conn;
              this.onClose(code, reason);
              // A connect timeout leaves the socket dialing: close it (a mini program has 5 at most).
              try {
                c.close(1000, 'closing');
              } catch (err) {
                // already closed
              }
            },
          };
        }

        openRaw(creds, h) {
          const url = rawUrl(this.url, this.options.path, creds);
          const sock = this.wx
            ? openWxSocket(this.wx, url, this.options.connectTimeout, h)
            : openWebSocket(this.WebSocket, url, h);
          return sock;
        }

        openSocketIo(creds, h) {
          const query = {};
          Object.keys(creds).forEach((k) => {
            if (creds[k] !== undefined && creds[k] !== null && creds[k] !== '') query[k] = String(creds[k]);
          });
          const socket = this.options.io(this.url, Object.assign(
            { transports: ['websocket'], forceNew: true, timeout: this.options.connectTimeout },
            this.options.ioOptions || {},
            { auth: creds, query, reconnection: false },
          ));
          let reported = false;
          socket.on('connect', () => {
            // Ask for our id (the mobile-sdk's requestId/saveId); socket.id differs between versions.
            socket.emit(E.REQUEST_MESSAGE, E.parseMsg(E.REQUEST_ID, {}, {}), (reply) => {
              const meta = (reply && reply.meta) || {};
              if (meta.client) h.greeting(meta.client, meta);
            });
          });
          socket.on(E.RESPONSE_MESSAGE, (envelope, ack) => h.envelope(envelope, ack));
          socket.on('connect_error', (err) => {
            const data = err && err.data;
            if (data && data.reason && !reported) {
              reported = true;
              this.emit('deny', { reason: data.reason, message: data.message || '', envelope: null });
            }
            h.close(data && data.reason ? CLOSE_CODES[data.reason] || 4000 : 1006,
              (data && data.reason) || (err && err.message) || 'connect_error');
          });
          socket.on('disconnect', (reason) => h.close(1006, String(reason)));
          return {
            emit: (...args) => socket.emit(...args),
            close: () => {
              socket.close();
            },
          };
        }

        /** The server's greeting (raw: `connect`; socket.io: the `saveId` answer) and its meta. */
        onGreeting(id, meta) {
          if (this.state !== 'connecting') return;
          this.clearTimer('connect');
          this.id = id;
          const m = meta || {};
          this.clock(m);
          this.userId = m.userId !== undefined && m.userId !== null && m.userId !== ''
            ? String(m.userId) : this.credUserId;
          if (isToken(this.creds)) this.scheduleRefresh(credsExpiry(this.creds));
          const conn = this.conn;
          const reconnected = this.oldIds.length > 0;
          if (reconnected) this.stats.reconnects += 1;
          const done = (replaced) => {
            if (conn !== this.conn || this.state !== 'connecting') return;
            this.state = 'open';
            this.attempt = 0;
            this.heartbeat();
            this.emit('connect', { id, userId: this.userId, reconnected, replaced });
            const waiting = this.outbox.splice(0);
            waiting.forEach((req) => this.transmit(req));
          };
          if (!reconnected || !this.userId) {
            done([]);
            return;
          }
          // Claim the old ids, so that messages sent to them come here; the inbox follows.
          this.transmit({
            action: E.RE_CONNECT_AND_UPDATES,
            payload: { clients: this.oldIds.slice(1) },
            meta: { client: this.oldIds[0] },
            timeout: this.options.requestTimeout,
            retried: false,
            resolve: (reply) => done((reply && reply.data && reply.data.payload && reply.data.payload.replaced) || []),
            reject: (err) => {
              this.emit('error', err);
              done([]);
            },
          });
        }

        onEnvelope(envelope) {
          if (!envelope || typeof envelope !== 'object' || !envelope.data) return;
          this.heartbeat();
          const action = envelope.data.action;
          const meta = envelope.meta || {};
          switch (action) {
            case E.CONNECT:
              if (meta.client) this.onGreeting(meta.client, meta);
              break;
            case E.EXCHANGE:
            case E.BROADCAST:
            case E.RECEIPT:
              this.deliver(action, envelope);
              break;
            case E.RESULT: {
              const result = this.resultOf(envelope);
              const req = this.pending.find((r) => (result.target
                ? r.action === E.SEND_TO_OTHERS && r.meta.target === result.target
                : r.action === E.BROADCAST));
              if (req) this.answer(req, envelope);
              this.emit('result', result);
              break;
            }
            case E.DENY: {
              const p = envelope.data.payload || {};
              this.emit('deny', { reason: p.reason, message: p.message, envelope });
              // A token past its exp: refresh at once, within the server's grace.
              if (p.reason === 'expired' && isToken(this.creds) && this.conn) this.refresh().catch(() => {});
              // The server answers in order; a denial answers the oldest request still waiting.
              if (this.pending.length) this.answer(this.pending[0], envelope);
              break;
            }
            case E.RE_CONNECT_UPDATED:
            case E.REFRESHED:
            case E.SAVE_ID: {
              const want = { [E.SAVE_ID]: E.REQUEST_ID, [E.REFRESHED]: E.REFRESH }[action] || E.RE_CONNECT_AND_UPDATES;
              const req = this.pending.find((r) => r.action === want);
              if (req) this.answer(req, envelope);
              break;
            }
            default:
              break; // pong, and actions of newer servers
          }
        }

        /** An exchange, broadcast or receipt: acknowledge it, and pass it on unless it is a duplicate. */
        deliver(action, envelope) {
          const meta = envelope.meta || {};
          const msgId = meta.msgId;
          const duplicate = msgId ? this.seen.check(msgId) : false;
          this.stats.received += 1;
          if (duplicate) this.stats.duplicates += 1;
          if (!duplicate && action === E.RECEIPT) {
            this.onReceipt(envelope);
          } else if (!duplicate) {
            this.emit(action, {
              payload: envelope.data.payload,
              from: meta.client || null,
              userId: meta.userId || null,
              msgId: msgId || null,
              timestamp: meta.timestamp || null,
              envelope,
            });
          }
          // Raw transport: only a client with a user id has an inbox (exchanges and receipts go
          // there), and a sender that asked for a receipt waits for the ack of its message too.
          // (socket.io clients acknowledge through the event's ack callback instead.)
          const inbox = action === E.EXCHANGE || action === E.RECEIPT;
          if (msgId && inbox && (this.userId || meta.receipt === true)
              && this.options.transport !== 'socketio' && this.conn && this.state !== 'closed') {
            this.stats.acks += 1;
            this.conn.send(JSON.stringify({ meta: { msgId }, data: { action: E.ACK } }));
          }
        }

        /** A delivery receipt: the 'receipt' event, and whoever waits in receipt(). */
        onReceipt(envelope) {
          const meta = envelope.meta || {};
          const p = envelope.data.payload || {};
          if (typeof p.msgId !== 'string') return;
          const receipt = {
            msgId: p.msgId,
            status: p.status || 'acked',
            ackedAt: typeof p.ackedAt === 'number' ? p.ackedAt : null,
            target: meta.target || null,
            envelope,
          };
          this.receipts.set(p.msgId, receipt);
          if (this.receipts.size > this.options.dedupe) {
            this.receipts.delete(this.receipts.keys().next().value);
          }
          const waiters = this.receiptWaiters.get(p.msgId) || [];
          this.receiptWaiters.delete(p.msgId);
          waiters.forEach((w) => {
            clearTimeout(w.timer);
            w.resolve(receipt);
          });
          this.emit('receipt', receipt);
        }

        /** Raw transport keepalive: ping after `pingInterval` of silence, give up `pingTimeout` later. */
        heartbeat() {
          const { pingInterval, pingTimeout } = this.options;
          if (!pingInterval || this.options.transport === 'socketio' || this.state !== 'open') return;
          this.clearTimer('dead');
          this.setTimer('ping', pingInterval, () => {
            if (this.conn) this.conn.send(JSON.stringify({ data: { action: E.PING } }));
            this.setTimer('dead', pingTimeout, () => {
              const conn = this.conn;
              if (!conn) return;
              this.onClose(1006, 'ping timeout');
              conn.close(1000, 'ping timeout');
            });
          });
        }

        /** Close the current socket on purpose (no reconnect from its close event). */
        drop(code, reason) {
          const conn = this.conn;
          if (!conn) return;
          this.onClose(code, reason, true);
          conn.close(code, reason);
        }

        onClose(code, reason, deliberate) {
          const wasOpen = this.state === 'open';
          this.conn = null;
          this.state = 'closed';
          ['connect', 'ping', 'dead', 'refresh'].forEach((t) => this.clearTimer(t));
          const lost = this.pending.splice(0);
          lost.forEach((req) => {
            clearTimeout(req.timer);
            req.reject(new WxioError('disconnected', `connection lost (${reason || code})`));
          });
          if (this.id) {
            this.oldIds = [this.id].concat(this.oldIds.filter((x) => x !== this.id)).slice(0, MAX_OLD_IDS);
            this.id = null;
          }
          const deniedReason = CLOSE_REASONS[code] || null;
          this.lastReason = deniedReason;
          if (deniedReason && FATAL[deniedReason]) this.running = false;
          if (!this.running) this.failOutbox(new WxioError(deniedReason || 'closed', `not connected (${reason || code})`));
          const willReconnect = Boolean(this.running && !this.paused && this.options.reconnect && !deliberate);
          if (wasOpen || deniedReason || deliberate || this.attempt === 0) {
            this.emit('disconnect', { code, reason: deniedReason || reason || '', willReconnect });
          }
          if (willReconnect) this.retry(code, reason);
        }

        /** Token connections: refresh `refreshDelay` before `exp` (ms, server time). */
        scheduleRefresh(exp) {
          this.clearTimer('refresh');
          if (exp === null || exp === undefined || !this.conn) return;
          const delay = refreshDelay(exp - this.serverNow(), this.options.refreshLead);
          this.setTimer('refresh', delay, () => this.refresh().catch(() => {}));
        }

        /** Give the socket up and connect again with new credentials (after a failed refresh). */
        reconnectNow(reason) {
          const conn = this.conn;
          if (!conn) return;
          this.freshCreds = true;
          this.onClose(1006, reason);
          try {
            conn.close(1000, reason);
          } catch (err) {
            // already closed
          }
        }

        retry(code, reason) {
          if (!this.running || this.paused || !this.options.reconnect) return;
          if (this.attempt >= this.options.maxAttempts) {
            this.running = false;
            this.failOutbox(new WxioError('disconnected', 'gave up reconnecting'));
            return;
          }
          const o = this.options;
          const base = Math.min(o.maxDelay, o.minDelay * Math.pow(o.factor, this.attempt));
          const delay = Math.max(0, Math.round(Math.min(o.maxDelay, base * (1 + o.jitter * (2 * Math.random() - 1)))));
          this.attempt += 1;
          this.emit('reconnecting', { attempt: this.attempt, delay, code, reason: reason || '' });
          this.setTimer('retry', delay, () => this.dial());
        }

        setTimer(name, ms, fn) {
          this.clearTimer(name);
          this.timers[name] = setTimeout(() => {
            this.timers[name] = null;
            fn();
          }, ms);
        }

        clearTimer(name) {
          if (this.timers[name]) clearTimeout(this.timers[name]);
          this.timers[name] = null;
        }
      }

      /** Create a client and start connecting. */
      function connect(url, options) {
        return new Client(url, options).open();
      }

      module.exports = {
        Client, WxioError, connect, rawUrl, DEFAULTS, tokenExp, credsExpiry, refreshDelay, base64urlDecode,
      };
    },
    "envelope": function (module, exports, require) {
      /**
       * The mobile-sdk's helper functions and constants, under their own names, so code written for
       * it keeps working: an envelope is `{meta: {timestamp, ...metadata}, data: {action, payload}}`.
       */

      const { md5 } = require('./md5');

      // data.action values on the wire (docs/guide.md, "The envelope").
      const SAVE_ID = 'saveId';
      const REQUEST_ID = 'requestId';
      const SEND_TO_OTHERS = 'sendToOthers';
      const RE_CONNECT_AND_UPDATES = 'reConnectAndUpdates';
      const RE_CONNECT_UPDATED = 'reConnectUpdated';
      const DENY = 'deny';
      const EXCHANGE = 'exchange';
      const BROADCAST = 'broadcast';
      const CONNECT = 'connect';
      const DISCONNECT = 'disconnect';
      // wxio's additions: inbox acknowledgement, keepalive, and the answer to a send or broadcast.
      const ACK = 'ack';
      const PING = 'ping';
      const PONG = 'pong';
      const RESULT = 'result';
      // A delivery receipt: the target acknowledged a message sent with meta.receipt = true.
      const RECEIPT = 'receipt';
      // Token connections: a new token before the old one's exp, and the server's answer.
      const REFRESH = 'refresh';
      const REFRESHED = 'refreshed';
      // socket.io event names of the core namespace.
      const REQUEST_MESSAGE = 'requestMessage';
      const RESPONSE_MESSAGE = 'responseMessage';

      /** `{meta: {timestamp: now, ...metadata}, data: {action, payload}}`, as the mobile-sdk built it. */
      function parseMsg(action, payload = {}, metadata = {}) {
        const meta = Object.assign({}, { timestamp: Date.now() }, metadata);
        return { meta, data: { action, payload } };
      }

      function parseBroadcastMsg(payload = {}, metadata = {}) {
        return parseMsg(BROADCAST, payload, metadata);
      }

      function parseDenyMsg(payload = {}, metadata = {}) {
        return parseMsg(DENY, payload, metadata);
      }

      function parseExchangeMsg(payload = {}, metadata = {}) {
        return parseMsg(EXCHANGE, payload, metadata);
      }

      /**
       * `{app, timestamp, sign}` with `sign = md5(app + key + timestamp)`. For demos and tests only:
       * a key shipped inside a mini program or a web page is no secret. Let your backend sign.
       */
      function signMd5(app, key, timestamp) {
        const ts = timestamp === undefined || timestamp === null ? Date.now() : Number(timestamp);
        return { app, timestamp: ts, sign: md5(`${app}${key}${ts}`) };
      }

      module.exports = {
        SAVE_ID,
        REQUEST_ID,
        SEND_TO_OTHERS,
        RE_CONNECT_AND_UPDATES,
        RE_CONNECT_UPDATED,
        DENY,
        EXCHANGE,
        BROADCAST,
        CONNECT,
        DISCONNECT,
        ACK,
        PING,
        PONG,
        RESULT,
        RECEIPT,
        REFRESH,
        REFRESHED,
        REQUEST_MESSAGE,
        RESPONSE_MESSAGE,
        parseMsg,
        parseBroadcastMsg,
        parseDenyMsg,
        parseExchangeMsg,
        signMd5,
        md5,
      };
    },
    "index": function (module, exports, require) {
      /** wxio-client: the public surface (see index.d.ts and README.md). */

      const envelope = require('./envelope');
      const client = require('./client');

      module.exports = Object.assign({}, envelope, {
        VERSION: '0.1.0',
        Client: client.Client,
        WxioError: client.WxioError,
        connect: client.connect,
      });
    },
    "md5": function (module, exports, require) {
      /**
       * MD5 (RFC 1321) of a string's UTF-8 bytes, as lowercase hex, in plain JavaScript: mini
       * programs have no crypto module, no TextEncoder and no Buffer. Only for the md5 signing scheme
       * (`md5(app + key + timestamp)`); never a way to protect anything by itself.
       */

      const S = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
        5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
        6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
      ];
      const K = [];
      for (let i = 0; i < 64; i += 1) K.push(Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0);

      /** UTF-8 bytes of `str`; a lone surrogate becomes U+FFFD, as TextEncoder does. */
      function utf8(str) {
        const out = [];
        for (let i = 0; i < str.length; i += 1) {
          let c = str.charCodeAt(i);
          if (c < 0x80) {
            out.push(c);
          } else if (c < 0x800) {
            out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
          } else if (c >= 0xd800 && c < 0xe000) {
            const d = i + 1 < str.length ? str.charCodeAt(i + 1) : 0;
            if (c < 0xdc00 && d >= 0xdc00 && d < 0xe000) {
              i += 1;
              c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
              out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
            } else {
              out.push(0xef, 0xbf, 0xbd);
            }
          } else {
            out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
          }
        }
        return out;
      }

      function hexWord(w) {
        let s = '';
        for (let j = 0; j < 4; j += 1) {
          const b = (w >>> (j * 8)) & 255;
          s += (b < 16 ? '0' : '') + b.toString(16);
        }
        return s;
      }

      function md5(input) {
        const bytes = utf8(String(input));
        const n = bytes.length;
        const words = new Array((((n + 8) >> 6) + 1) * 16).fill(0);
        for (let i = 0; i < n; i += 1) words[i >> 2] |= bytes[i] << ((i % 4) * 8);
        words[n >> 2] |= 0x80 << ((n % 4) * 8);
        words[words.length - 2] = (n * 8) >>> 0;
        words[words.length - 1] = Math.floor((n * 8) / 4294967296);
        let a0 = 0x67452301;
        let b0 = 0xefcdab89 | 0;
        let c0 = 0x98badcfe | 0;
        let d0 = 0x10325476;
        for (let blk = 0; blk < words.length; blk += 16) {
          let a = a0;
          let b = b0;
          let c = c0;
          let d = d0;
          for (let i = 0; i < 64; i += 1) {
            let f;
            let g;
            if (i < 16) {
              f = (b & c) | (~b & d);
              g = i;
            } else if (i < 32) {
              f = (d & b) | (~d & c);
              g = (5 * i + 1) % 16;
            } else if (i < 48) {
              f = b ^ c ^ d;
              g = (3 * i + 5) % 16;
            } else {
              f = c ^ (b | ~d);
              g = (7 * i) % 16;
            }
            const x = (a + f + K[i] + words[blk + g]) | 0;
            a = d;
            d = c;
            c = b;
            b = (b + ((x << S[i]) | (x >>> (32 - S[i])))) | 0;
          }
          a0 = (a0 + a) | 0;
          b0 = (b0 + b) | 0;
          c0 = (c0 + c) | 0;
          d0 = (d0 + d) | 0;
        }
        return hexWord(a0) + hexWord(b0) + hexWord(c0) + hexWord(d0);
      }

      module.exports = { md5 };
    }
  };
  var cache = {};
  function load(name) {
    var key = name.replace(/^\.\//, '').replace(/\.js$/, '');
    if (cache[key]) return cache[key].exports;
    if (!defs[key]) throw new Error('wxio: no module ' + name);
    var module = { exports: {} };
    cache[key] = module;
    defs[key].call(undefined, module, module.exports, load);
    return module.exports;
  }
  return load("index");
}));
