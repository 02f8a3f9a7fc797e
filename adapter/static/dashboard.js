// The dashboard page: polls /dashboard/stats every second, and runs the "try it" panel with
// the JS client (window.wxio, from /static/wxio.js). No inline scripts: the page's CSP forbids them.
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var rates = [];
  var demo = null;

  function cell(text, cls) {
    var td = document.createElement('td');
    td.textContent = String(text);
    if (cls) td.className = cls;
    return td;
  }

  function fill(tableId, rows, numericLast) {
    var body = $(tableId).tBodies[0];
    var width = $(tableId).tHead.rows[0].cells.length;
    var trs = rows.map(function (cells) {
      var tr = document.createElement('tr');
      cells.forEach(function (c, i) {
        tr.appendChild(cell(c, numericLast && i === cells.length - 1 ? 'num' : ''));
      });
      return tr;
    });
    if (!trs.length) {
      var tr = document.createElement('tr');
      var td = cell('none yet', 'empty');
      td.colSpan = width;
      tr.appendChild(td);
      trs.push(tr);
    }
    body.replaceChildren.apply(body, trs);
  }

  function entries(obj) {
    return Object.keys(obj || {}).sort().map(function (k) { return [k, obj[k]]; });
  }

  function fmt(n) {
    return typeof n === 'number' ? (Math.round(n * 100) / 100).toLocaleString('en') : '–';
  }

  function duration(s) {
    if (s < 60) return Math.floor(s) + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + Math.floor(s % 60) + 's';
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  }

  function spark() {
    var canvas = $('spark');
    var ctx = canvas.getContext('2d');
    var w = canvas.width;
    var h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    var max = Math.max.apply(null, rates.concat([1]));
    ctx.strokeStyle = '#07c160';
    ctx.lineWidth = 2;
    ctx.beginPath();
    rates.forEach(function (r, i) {
      var x = w - (rates.length - 1 - i) * (w / (120 - 1)); // newest at the right edge
      var y = h - 2 - (r / max) * (h - 4);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }

  function render(s) {
    if (demo === null) setMode(s.demo);
    $('node').textContent = s.node;
    $('uptime').textContent = duration(s.uptime);
    $('conn-total').textContent = fmt(s.connections.total);
    $('rate').textContent = fmt(s.messages.per_second);
    $('msg-total').textContent = fmt(s.messages.total);
    $('deny-total').textContent = fmt(s.denials.total);
    $('inbox-total').textContent = s.inbox.available ? fmt(s.inbox.messages) : 'n/a';
    rates.push(s.messages.per_second);
    if (rates.length > 120) rates.shift();
    spark();

    var conns = [];
    entries(s.connections.by_app).forEach(function (app) {
      entries(app[1]).forEach(function (t) { conns.push([app[0], t[0], t[1]]); });
    });
    fill('conn-table', conns, true);
    fill('action-table', entries(s.messages.by_action), true);
    fill('deny-table', entries(s.denials.by_reason), true);
    fill('inbox-table', s.inbox.available
      ? s.inbox.largest.map(function (b) { return [b.app, b.user, b.size]; })
      : [['–', s.inbox.why, '']], true);
    fill('node-table', s.cluster.nodes.map(function (n) {
      return [n.id + (n.self ? ' (this node)' : ''), n.alive ? 'alive' : 'gone'];
    }));
    var sends = entries(s.sends).map(function (e) { return ['sends ' + e[0], e[1]]; });
    entries(s.engine_sessions).forEach(function (e) { sends.push(['Engine.IO ' + e[0] + ' sessions', e[1]]); });
    fill('send-table', sends, true);
    $('error').hidden = true;
  }

  function refresh() {
    fetch('/dashboard/stats', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(render)
      .catch(function (err) {
        $('error').hidden = false;
        $('error').textContent = 'stats unavailable: ' + err.message;
      });
  }

  // -- try it ---------------------------------------------------------------------------------

  var client = null;
  var myId = null;
  var peers = {};

  function log(kind, text) {
    var li = document.createElement('li');
    li.className = kind;
    li.textContent = text;
    var list = $('log');
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 100) list.removeChild(list.lastChild);
  }

  function status(text, cls) {
    $('status').textContent = text;
    $('status').className = 'status ' + (cls || '');
  }

  function short(id) {
    return id ? id.slice(0, 8) : '?';
  }

  function renderPeers() {
    var select = $('peer');
    var chosen = select.value;
    var ids = Object.keys(peers);
    var options = ids.map(function (id) {
      var opt = document.createElement('option');
      opt.value = id;
      opt.textContent = (peers[id] || 'anonymous') + ' (' + short(id) + ')';
      return opt;
    });
    if (!options.length) {
      var none = document.createElement('option');
      none.value = '';
      none.textContent = '(no other tab yet)';
      options.push(none);
    }
    select.replaceChildren.apply(select, options);
    if (peers[chosen] !== undefined) select.value = chosen;
  }

  function addPeer(id, user) {
    if (!id || id === myId) return false;
    var known = peers[id] !== undefined;
    peers[id] = user || '';
    renderPeers();
    return !known;
  }

  function user() {
    return $('user').value.trim();
  }

  function credentials() {
    if (demo) {
      return fetch('/dashboard/demo-credentials?userId=' + encodeURIComponent(user()),
        { cache: 'no-store', credentials: 'same-origin' })
        .then(function (res) {
          if (!res.ok) throw new Error('demo credentials: HTTP ' + res.status);
          return res.json();
        });
    }
    return {
      app: $('c-app').value.trim(),
      timestamp: Number($('c-ts').value.trim()),
      sign: $('c-sign').value.trim(),
      userId: user() || undefined,
    };
  }

  function textOf(payload) {
    if (payload && typeof payload === 'object' && typeof payload.text === 'string') return payload.text;
    return JSON.stringify(payload);
  }

  function connect() {
    if (client) client.close();
    peers = {};
    renderPeers();
    status('connecting…');
    client = wxio.connect(location.origin, { credentials: credentials });
    client.on('connect', function (e) {
      myId = e.id;
      $('my-id').textContent = e.id;
      status('connected', 'open');
      log('sys', (e.reconnected ? 'reconnected' : 'connected') + ' as ' + e.id);
      // Say hello to the other tabs; each answers with a direct hello of its own.
      client.broadcast({ hello: e.id, user: user() }).catch(function () {});
    });
    client.on('disconnect', function (e) {
      status('disconnected (' + (e.reason || e.code) + ')' + (e.willReconnect ? ', retrying' : ''), 'bad');
      $('my-id').textContent = '–';
    });
    client.on('reconnecting', function (e) {
      status('reconnecting in ' + e.delay + ' ms (attempt ' + e.attempt + ')', 'bad');
    });
    client.on('deny', function (d) {
      if (d.reason === 'target_offline') return; // reported with the send
      log('deny', 'denied: ' + d.reason + (d.message ? ' (' + d.message + ')' : ''));
    });
    client.on('exchange', function (m) {
      if (m.payload && m.payload.hello) {
        addPeer(m.from, m.payload.user);
        return;
      }
      log('in', 'from ' + (peers[m.from] || short(m.from)) + ': ' + textOf(m.payload));
    });
    client.on('broadcast', function (m) {
      if (m.payload && m.payload.hello) {
        if (addPeer(m.from, m.payload.user)) {
          client.send(m.from, { hello: myId, user: user() }).catch(function () {});
        }
        return;
      }
      log('in', 'to all from ' + (peers[m.from] || short(m.from)) + ': ' + textOf(m.payload));
    });
  }

  function send() {
    var target = $('peer').value;
    var text = $('text').value;
    if (!client || !target || !text) return;
    client.send(target, { text: text }).then(function (r) {
      log('out', 'to ' + (peers[target] || short(target)) + ': ' + text + ' (' + r.status + ')');
      $('text').value = '';
    }, function (err) {
      log('deny', 'not sent: ' + err.reason + (err.message ? ' (' + err.message + ')' : ''));
      if (err.reason === 'target_offline') {
        delete peers[target];
        renderPeers();
      }
    });
  }

  function broadcast() {
    var text = $('text').value;
    if (!client || !text) return;
    client.broadcast({ text: text }).then(function (r) {
      log('out', 'to all: ' + text + ' (' + r.delivered + ' delivered)');
      $('text').value = '';
    }, function (err) {
      log('deny', 'not sent: ' + err.reason);
    });
  }

  function setMode(isDemo) {
    demo = Boolean(isDemo);
    $('mode').textContent = demo ? 'DEMO MODE' : 'production';
    $('mode').className = 'badge' + (demo ? ' demo' : '');
    $('creds').hidden = demo;
    if (demo) {
      $('user').value = 'tab-' + Math.random().toString(36).slice(2, 6);
      connect();
    }
  }

  $('connect').addEventListener('click', connect);
  $('send').addEventListener('click', send);
  $('broadcast').addEventListener('click', broadcast);
  $('text').addEventListener('keydown', function (e) {
    if (e.key === 'Enter') send();
  });
  refresh();
  setInterval(refresh, 1000);
}());
