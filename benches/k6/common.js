// Shared by the edge k6 scenarios: the target, request helpers and env parsing.
//
// Environment (every scenario):
//   EDGE_URL    client URL of the edge node          default http://127.0.0.1:8080
//   EDGE_HOST   Host header to send (a site name when EDGE_URL is an IP); default: none
//   DURATION    how long the scenario runs            default 30s
//   VUS         concurrent virtual users              default per scenario
//   P99_MS      p99 latency bound in milliseconds     default per scenario
import http from 'k6/http';

export const EDGE_URL = (__ENV.EDGE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const EDGE_HOST = __ENV.EDGE_HOST || '';
export const DURATION = __ENV.DURATION || '30s';

// The asset set benches/k6/run.sh generates; set EDGE_PATHS for any other site.
export const DEFAULT_PATHS = [
  '/index.html',
  '/css/site.css',
  '/css/theme.4f3c2a1b9e.css',
  '/js/app.js',
  '/js/vendor.9b8e7d6c5a.js',
  '/img/logo.svg',
  '/img/hero.jpg',
  '/fonts/inter.woff2',
];

/** A comma-separated list from the environment, or `dflt`. */
export function list(name, dflt) {
  const raw = __ENV[name];
  if (!raw) return dflt;
  return raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

/** A number from the environment, or `dflt`. */
export function num(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (Number.isNaN(n)) throw new Error(`${name}=${raw} is not a number`);
  return n;
}

/** A boolean from the environment ("0", "false", "no" are false), or `dflt`. */
export function flag(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return dflt;
  return !['0', 'false', 'no', 'off'].includes(raw.toLowerCase());
}

/** "10s", "2m", "500ms", "1h" → milliseconds. */
export function durationMs(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`duration ${text} is not like 10s, 2m, 500ms`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
}

/** Request params: the Host override, then `headers`, then any other params. */
export function params(headers, extra) {
  const h = Object.assign({}, EDGE_HOST ? { Host: EDGE_HOST } : {}, headers || {});
  return Object.assign({ headers: h }, extra || {});
}

/** GET `path` on the edge. */
export function get(path, headers, extra) {
  return http.get(EDGE_URL + path, params(headers, extra));
}

/** A response header by name, case-insensitively (k6 canonicalises names: `Etag`). */
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k in res.headers) {
    if (k.toLowerCase() === want) return res.headers[k];
  }
  return undefined;
}

/** The `Cache-Status` value (RFC 9211), or '' when the server sends none. */
export function cacheStatus(res) {
  return header(res, 'Cache-Status') || '';
}

/** Whether edge answered from cache (`Cache-Status: edge; hit; ...`). */
export function isHit(res) {
  return /;\s*hit\b/.test(cacheStatus(res));
}

/** One element of `xs`, uniformly. */
export function pick(xs) {
  return xs[Math.floor(Math.random() * xs.length)];
}

/** The Accept-Encoding values of a mixed client population: most take br, some only
 * gzip, a few nothing (each is sent explicitly so that k6 adds none of its own). */
export const CLIENT_ENCODINGS = [
  'gzip, deflate, br, zstd',
  'gzip, deflate, br, zstd',
  'br, gzip',
  'gzip, deflate',
  'identity',
];
