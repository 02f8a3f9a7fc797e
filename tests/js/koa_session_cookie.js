// A koa app with koa-session signs a user in; prints the cookies its response set, as one JSON
// line: {"cookies": {"EGG_SESS": "...", "EGG_SESS.sig": "..."}, "setCookie": [...]}.
//
//   node koa_session_cookie.js '{"keys": ["k1"], "algorithm": "sha256", "key": "EGG_SESS",
//                               "maxAge": 86400000, "session": {"user": "alice"}}'
//
// algorithm "sha256" signs as egg-cookies does, "sha1" as koa's own cookies package.
'use strict';

const http = require('node:http');
const Koa = require('koa');
const Keygrip = require('keygrip');
const { createSession } = require('koa-session');

const opts = JSON.parse(process.argv[2] || '{}');
const app = new Koa();
app.keys = new Keygrip(opts.keys || ['egg-keys'], opts.algorithm || 'sha256');
app.use(createSession({ key: opts.key || 'EGG_SESS', maxAge: opts.maxAge ?? 86400000 }, app));
app.use((ctx) => {
  Object.assign(ctx.session, opts.session || { user: 'alice' });
  ctx.body = 'signed in';
});

const server = app.listen(0, '127.0.0.1', () => {
  http.get({ host: '127.0.0.1', port: server.address().port, path: '/login' }, (res) => {
    res.resume();
    res.on('end', () => {
      const setCookie = res.headers['set-cookie'] || [];
      const cookies = {};
      for (const line of setCookie) {
        const pair = line.split(';')[0];
        const at = pair.indexOf('=');
        cookies[pair.slice(0, at)] = pair.slice(at + 1);
      }
      process.stdout.write(JSON.stringify({ cookies, setCookie }) + '\n');
      server.close();
    });
  });
});
