// The dashboard page: polls /dashboard/stats every second, charts its history, and runs the "try it" panel with
// the JS client (window.wxio, from /static/wxio.js). No inline scripts: the page's CSP forbids them.
// Behind a round-robin load balancer each request may reach another node: the page sticks to one node (?node=<id>
// in its address and in its requests; the node that gets a request for another relays it there).
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var demo = null;
  var pinned = new URLSearchParams(location.search).get('node');

  function pin(node) {
    pinned = node;
    history.replaceState(null, '', node ? '?node=' + encodeURIComponent(node) : location.pathname);
  }

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

  // -- charts: plain SVG, drawn from the history in the stats ---------------------------------

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var PALETTE = ['#1c7ed6', '#e8590c', '#2b8a3e', '#ae3ec9', '#d6336c', '#0c8599', '#f08c00', '#5c677d'];
  var W = 560;
  var H = 190;
  var PAD = { left: 44, right: 12, top: 10, bottom: 24 };

  function el(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A round step giving about four gridlines; whole numbers for counts.
  function yScale(max, whole) {
    if (!(max > 0)) max = 1;
    var raw = max / 4;
    var pow = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (f) { return f * pow; })
      .filter(function (v) { return v >= raw; })[0];
    if (whole) step = Math.max(1, Math.ceil(step));
    return { step: step, top: Math.ceil(max / step - 1e-9) * step };
  }

  function ago(seconds) {
    if (seconds <= 0) return 'now';
    var m = Math.floor(seconds / 60);
    var r = seconds % 60;
    return '−' + (m ? m + 'm' : '') + (r ? r + 's' : '');
  }

  // spec: {kind: 'line' | 'bars' | 'area', whole, value(values) -> legend text, now(series) -> text};
  // shown: the seconds up to `now` on the x axis.
  function chart(id, history, series, spec, now, shown, empty) {
    var box = $(id);
    var plot = box.querySelector('svg.plot');
    var legend = box.querySelector('ul.legend');
    var names = Object.keys(series).sort();
    var t = history.t;
    var x0 = now - shown;
    var iw = W - PAD.left - PAD.right;
    var ih = H - PAD.top - PAD.bottom;
    var sx = function (time) { return PAD.left + ((time - x0) / shown) * iw; };
    var max = 0;
    if (spec.kind === 'bars') {
      t.forEach(function (_, i) {
        var sum = names.reduce(function (acc, n) { return acc + series[n][i]; }, 0);
        max = Math.max(max, sum);
      });
    } else {
      names.forEach(function (n) { max = Math.max.apply(null, [max].concat(series[n])); });
    }
    var scale = yScale(max, spec.whole);
    var sy = function (v) { return PAD.top + ih - (v / scale.top) * ih; };

    var parts = [];
    for (var v = 0; v <= scale.top + 1e-9; v += scale.step) {
      parts.push(el('line', { x1: PAD.left, x2: W - PAD.right, y1: sy(v), y2: sy(v), class: v ? 'grid' : 'axis' }));
      parts.push(el('text', { x: PAD.left - 6, y: sy(v) + 4, class: 'tick y' }, fmt(v)));
    }
    var every = shown > 360 ? 120 : shown > 180 ? 60 : shown > 60 ? 30 : 10;
    for (var back = 0; back <= shown + 1e-9; back += every) {
      var x = sx(now - back);
      parts.push(el('line', { x1: x, x2: x, y1: PAD.top + ih, y2: PAD.top + ih + 4, class: 'axis' }));
      parts.push(el('text', { x: x, y: H - 6, class: 'tick x' }, ago(back)));
    }

    var colors = {};
    names.forEach(function (n, i) { colors[n] = PALETTE[i % PALETTE.length]; });
    if (spec.kind === 'bars') {
      var bw = Math.max(2, (history.step / shown) * iw * 0.8);
      var base = t.map(function () { return 0; });
      names.forEach(function (n) {
        var g = el('g', { class: 'series', 'data-series': n, 'data-last': series[n][t.length - 1], fill: colors[n] });
        series[n].forEach(function (count, i) {
          if (!count) return;
          // A bar covers the interval that ends at its point.
          var right = sx(t[i]);
          g.appendChild(el('rect', { x: right - bw, y: sy(base[i] + count), width: bw, height: sy(base[i]) - sy(base[i] + count) }));
          base[i] += count;
        });
        parts.push(g);
      });
    } else {
      names.forEach(function (n) {
        var d = '';
        series[n].forEach(function (value, i) {
          // Break the line where points are missing (the server was busy or stopped).
          var gap = i === 0 || t[i] - t[i - 1] > history.step * 2.5;
          d += (gap ? 'M' : 'L') + sx(t[i]).toFixed(1) + ' ' + sy(value).toFixed(1);
        });
        var g = el('g', { class: 'series', 'data-series': n, 'data-last': series[n][t.length - 1] });
        if (spec.kind === 'area' && t.length) {
          var first = sx(t[0]).toFixed(1);
          var last = sx(t[t.length - 1]).toFixed(1);
          g.appendChild(el('path', {
            d: d.replace(/M/g, 'L').replace(/^L/, 'M') + 'L' + last + ' ' + sy(0) + 'L' + first + ' ' + sy(0) + 'Z',
            fill: colors[n], 'fill-opacity': 0.15, stroke: 'none',
          }));
        }
        g.appendChild(el('path', { d: d, fill: 'none', stroke: colors[n], 'stroke-width': 2, 'stroke-linejoin': 'round' }));
        if (t.length) {
          g.appendChild(el('circle', { cx: sx(t[t.length - 1]), cy: sy(series[n][t.length - 1]), r: 3, fill: colors[n] }));
        }
        parts.push(g);
      });
    }
    var message = empty || (t.length ? '' : 'collecting: a point every ' + history.step + ' s');
    if (message) {
      parts.push(el('text', { x: PAD.left + iw / 2, y: PAD.top + ih / 2, class: 'empty' }, message));
    }
    plot.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    plot.setAttribute('data-points', String(t.length));
    plot.replaceChildren.apply(plot, parts);

    var items = names.map(function (n) {
      var li = document.createElement('li');
      li.setAttribute('data-series', n);
      var swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = colors[n]; // CSSOM, which the page's CSP allows
      var name = document.createElement('span');
      name.className = 'name';
      name.textContent = n;
      var value = document.createElement('span');
      value.className = 'value';
      value.textContent = spec.value(series[n]);
      li.append(swatch, name, value);
      return li;
    });
    if (!items.length) {
      var none = document.createElement('li');
      none.className = 'empty';
      none.textContent = empty ? 'not on this node' : 'none yet';
      items.push(none);
    }
    legend.replaceChildren.apply(legend, items);
    box.querySelector('.now').textContent = spec.now(names.map(function (n) { return series[n]; }));
  }

  function last(values) { return values.length ? values[values.length - 1] : 0; }
  function sum(values) { return values.reduce(function (a, b) { return a + b; }, 0); }
  function sumLast(all) { return sum(all.map(last)); }

  function charts(s) {
    var h = s.history;
    // The whole minutes that hold the history (one at least), so that a young server's first
    // minute is not squeezed against the right edge of ten.
    var shown = h.span;
    if (h.t.length) {
      shown = Math.min(h.span, Math.max(60, Math.ceil((s.time - h.t[0] + h.step) / 60 - 1e-9) * 60));
    }
    var minutes = Math.round(shown / 60);
    $('span').textContent = minutes === 1 ? 'minute' : minutes + ' minutes';
    $('history-note').textContent = 'a point every ' + h.step + ' s, up to ' +
      Math.round(h.span / 60) + ' minutes kept; newest at the right';
    var spanText = minutes + ' min';
    chart('chart-messages', h, h.messages, {
      kind: 'line',
      value: function (v) { return fmt(last(v)) + ' /s'; },
      now: function (all) { return fmt(sumLast(all)) + ' /s'; },
    }, s.time, shown);
    chart('chart-connections', h, h.connections, {
      kind: 'line', whole: true,
      value: function (v) { return fmt(last(v)); },
      now: function (all) { return fmt(sumLast(all)) + ' open'; },
    }, s.time, shown);
    chart('chart-denials', h, h.denials, {
      kind: 'bars', whole: true,
      value: function (v) { return fmt(sum(v)) + ' in ' + spanText; },
      now: function (all) { return fmt(sum(all.map(sum))) + ' in ' + spanText; },
    }, s.time, shown);
    var inbox = h.inbox === null ? {} : { waiting: h.inbox };
    chart('chart-inbox', h, inbox, {
      kind: 'area', whole: true,
      value: function (v) { return fmt(last(v)); },
      now: function (all) { return all.length ? fmt(sumLast(all)) + ' waiting' : 'n/a'; },
    }, s.time, shown, h.inbox === null ? 'inbox sizes are kept in the cluster\u2019s Redis' : '');
  }

  function render(s) {
    if (demo === null) setMode(s.demo);
    if (!pinned) pin(s.node);
    $('node').textContent = s.node;
    document.title = 'wxio dashboard: ' + s.node;
    $('uptime').textContent = duration(s.uptime);
    $('conn-total').textContent = fmt(s.connections.total);
    $('rate').textContent = fmt(s.messages.per_second);
    $('msg-total').textContent = fmt(s.messages.total);
    $('deny-total').textContent = fmt(s.denials.total);
    $('inbox-total').textContent = s.inbox.available ? fmt(s.inbox.messages) : 'n/a';
    charts(s);

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
      return [n.id + (n.self ? ' (shown)' : ''), n.alive ? 'alive' : 'gone'];
    }));
    // A node's id switches the page to it (a link: it can be opened in another tab too).
    Array.prototype.forEach.call($('node-table').tBodies[0].rows, function (tr, i) {
      var n = s.cluster.nodes[i];
      if (!n || n.self || !n.alive) return;
      var a = document.createElement('a');
      a.href = '?node=' + encodeURIComponent(n.id);
      a.textContent = n.id;
      a.setAttribute('data-node', n.id);
      tr.cells[0].replaceChildren(a);
    });
    var sends = entries(s.sends).map(function (e) { return ['sends ' + e[0], e[1]]; });
    entries(s.engine_sessions).forEach(function (e) { sends.push(['Engine.IO ' + e[0] + ' sessions', e[1]]); });
    fill('send-table', sends, true);
    $('error').hidden = true;
  }

  function refresh() {
    var url = '/dashboard/stats' + (pinned ? '?node=' + encodeURIComponent(pinned) : '');
    fetch(url, { cache: 'no-store', credentials: 'same-origin' })
      .then(function (res) {
        if (res.ok) return res.json();
        return res.json().catch(function () { return {}; }).then(function (body) {
          if (body.gone) {
            pin(null); // the node left the cluster: the next answer picks another
            throw new Error(body.error + '; switching to another node');
          }
          throw new Error(body.error || 'HTTP ' + res.status);
        });
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
