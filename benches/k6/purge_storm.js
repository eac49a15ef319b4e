// A purge storm while serving: readers ask for random paths while purgers POST
// `{"urls": ["http://HOST/path"]}` to the admin `/purge` endpoint at a fixed rate.
// Every read must still succeed (a purged URL is refetched), every purge must be
// accepted, and reads must stay within their p99 bound.
//
//   k6 run -e EDGE_URL=http://127.0.0.1:8080 -e EDGE_ADMIN=http://127.0.0.1:9090 \
//          -e EDGE_TOKEN=secret benches/k6/purge_storm.js
//
// Environment (besides common.js): EDGE_ADMIN (admin base URL, default
// http://127.0.0.1:9090), EDGE_TOKEN (bearer token; none by default), EDGE_PATHS,
// PURGE_BASE (scheme://host the purge URLs name; default http://EDGE_HOST or
// EDGE_URL), PURGE_RATE (purges per second, default 20), VUS (readers, default 16),
// P99_MS (reads, default 200), PURGE_P99_MS (default 1000).
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { DEFAULT_PATHS, DURATION, EDGE_HOST, EDGE_URL, get, isHit, list, num, pick } from './common.js';

const ADMIN = (__ENV.EDGE_ADMIN || 'http://127.0.0.1:9090').replace(/\/+$/, '');
const TOKEN = __ENV.EDGE_TOKEN || '';
const PATHS = list('EDGE_PATHS', DEFAULT_PATHS);
const PURGE_BASE = (__ENV.PURGE_BASE || (EDGE_HOST ? `http://${EDGE_HOST}` : EDGE_URL)).replace(/\/+$/, '');
const readHits = new Counter('reads_hit');
const readMisses = new Counter('reads_not_hit');

export const options = {
  discardResponseBodies: true,
  scenarios: {
    readers: { executor: 'constant-vus', vus: num('VUS', 16), duration: DURATION, exec: 'read' },
    purgers: {
      executor: 'constant-arrival-rate',
      rate: num('PURGE_RATE', 20),
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 4,
      maxVUs: 16,
      exec: 'purge',
    },
  },
  thresholds: {
    'http_req_failed{scenario:readers}': ['rate==0'],
    'http_req_failed{scenario:purgers}': ['rate==0'],
    'http_req_duration{scenario:readers}': [`p(99)<${num('P99_MS', 200)}`],
    'http_req_duration{scenario:purgers}': [`p(99)<${num('PURGE_P99_MS', 1000)}`],
    checks: ['rate==1'],
  },
};

function purgeRequest(urls) {
  const headers = { 'Content-Type': 'application/json' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  return http.post(`${ADMIN}/purge`, JSON.stringify({ urls }), { headers, responseType: 'text' });
}

export function setup() {
  for (const path of PATHS) get(path, { 'Accept-Encoding': 'identity' });
  const res = purgeRequest([`${PURGE_BASE}${PATHS[0]}`]);
  if (res.status === 404 || res.status === 405) {
    throw new Error(`${ADMIN}/purge answered ${res.status}: this node has no purge endpoint`);
  }
  if (res.status === 401 || res.status === 403) {
    throw new Error(`${ADMIN}/purge answered ${res.status}: set EDGE_TOKEN to the admin token`);
  }
  if (res.status !== 200) {
    throw new Error(`${ADMIN}/purge answered ${res.status}: ${res.body}`);
  }
}

export function read() {
  const res = get(pick(PATHS), { 'Accept-Encoding': 'gzip, deflate, br, zstd' });
  check(res, { 'read: status is 200': (r) => r.status === 200 });
  if (isHit(res)) readHits.add(1);
  else readMisses.add(1);
}

export function purge() {
  const res = purgeRequest([`${PURGE_BASE}${pick(PATHS)}`]);
  check(res, { 'purge: status is 200': (r) => r.status === 200 });
}
