#!/usr/bin/env node
'use strict';
/**
 * Builds the single-file bundles from src/ with no dependencies and no network:
 *
 *   dist/wxio.js    UMD: CommonJS `module.exports`, AMD, or the global `wxio` (a mini program
 *                   can copy this one file and `require('./wxio.js')`; a page can <script> it)
 *   dist/wxio.mjs   the same code as an ES module (named exports and a default export)
 *
 * and copies dist/wxio.js to adapter/static/wxio.js, where the server serves it.
 *
 *   node clients/js/build.js          write the files
 *   node clients/js/build.js --check  exit 1 if a written file differs from what src/ builds
 *
 * The bundler is a few lines: every src/ module becomes a function in a table, and a small
 * `require` resolves './name' inside the table. Output is deterministic (no dates, sorted).
 */

const fs = require('node:fs');
const path = require('node:path');

const ROOT = __dirname;
const SRC = path.join(ROOT, 'src');
const ENTRY = 'index';
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const HEADER = `/*! wxio-client ${pkg.version} | MIT | built from clients/js/src by build.js: do not edit */\n`;

function modules() {
  return fs.readdirSync(SRC).filter((f) => f.endsWith('.js')).sort().map((f) => ({
    name: f.slice(0, -3),
    code: fs.readFileSync(path.join(SRC, f), 'utf8').replace(/^'use strict';\n/, ''),
  }));
}

function factoryBody() {
  const table = modules().map((m) => `  ${JSON.stringify(m.name)}: function (module, exports, require) {\n${
    m.code.trimEnd().split('\n').map((l) => (l ? `    ${l}` : l)).join('\n')}\n  }`).join(',\n');
  return `var defs = {\n${table}\n};
var cache = {};
function load(name) {
  var key = name.replace(/^\\.\\//, '').replace(/\\.js$/, '');
  if (cache[key]) return cache[key].exports;
  if (!defs[key]) throw new Error('wxio: no module ' + name);
  var module = { exports: {} };
  cache[key] = module;
  defs[key].call(undefined, module, module.exports, load);
  return module.exports;
}
return load(${JSON.stringify(ENTRY)});`;
}

function indent(text) {
  return text.split('\n').map((l) => (l ? `  ${l}` : l)).join('\n');
}

function umd() {
  return `${HEADER}(function (root, factory) {
  if (typeof module === 'object' && module && typeof module.exports === 'object') {
    module.exports = factory();
  } else if (typeof define === 'function' && define.amd) {
    define([], factory);
  } else {
    root.wxio = factory();
  }
}(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function () {
  'use strict';
${indent(factoryBody())}
}));
`;
}

function esm(names) {
  return `${HEADER}var wxio = (function () {
  'use strict';
${indent(factoryBody())}
})();
export default wxio;
export const {
${names.map((n) => `  ${n},`).join('\n')}
} = wxio;
`;
}

function build() {
  const cjs = umd();
  // The export names: whatever the entry module exports, evaluated from the UMD text.
  const mod = { exports: {} };
  new Function('module', 'exports', cjs)(mod, mod.exports); // eslint-disable-line no-new-func
  const names = Object.keys(mod.exports).sort();
  return {
    [path.join(ROOT, 'dist', 'wxio.js')]: cjs,
    [path.join(ROOT, 'dist', 'wxio.mjs')]: esm(names),
    [path.join(ROOT, '..', '..', 'adapter', 'static', 'wxio.js')]: cjs,
  };
}

function main() {
  const check = process.argv.includes('--check');
  const outputs = build();
  let stale = 0;
  for (const [file, text] of Object.entries(outputs)) {
    const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (current === text) continue;
    if (check) {
      stale += 1;
      process.stderr.write(`${path.relative(process.cwd(), file)} is not up to date with clients/js/src: run node clients/js/build.js\n`);
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
    }
  }
  process.exit(stale ? 1 : 0);
}

main();
