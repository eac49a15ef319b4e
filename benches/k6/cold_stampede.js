// A cold stampede on one URL: every VU asks for the same never-seen URL at the same
// instant, once per round (a new query string each round), so each round is one
// cold miss under VUS concurrent requests. With coalescing, each round costs the
// origin one fetch: one answer says `stored` (or, for a body edge streams while it
// stores it, `detail=streaming` without `collapsed`), the others `collapsed` or `hit`.
//
//   k6 run -e EDGE_URL=http://127.0.0.1:8080 -e STAMPEDE_PATH=/js/app.js benches/k6/cold_stampede.js
//
// Environment (besides common.js): STAMPEDE_PATH (default /js/vendor.9b8e7d6c5a.js;
// the origin must ignore the query), VUS (default 100), ROUND_MS (default 1000),
// P99_MS (default 2000), EXPECT_COALESCE (default 1: at most one fill per round, read
// from Cache-Status; 0 for a server that sends none).
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { DURATION, cacheStatus, durationMs, flag, get, num } from './common.js';

const PATH = __ENV.STAMPEDE_PATH || '/js/vendor.9b8e7d6c5a.js';
const ROUND_MS = num('ROUND_MS', 1000);
const ROUNDS = Math.ceil(durationMs(DURATION) / ROUND_MS) + 1;
const fills = new Counter('stampede_fills');
const collapsed = new Counter('stampede_collapsed');
const hits = new Counter('stampede_hits');

const thresholds = {
  http_req_failed: ['rate==0'],
  http_req_duration: [`p(99)<${num('P99_MS', 2000)}`],
  checks: ['rate==1'],
};
// One fill per round at most: without coalescing there would be one per VU.
if (flag('EXPECT_COALESCE', true)) thresholds.stampede_fills = [`count<=${ROUNDS}`];

export const options = {
  discardResponseBodies: true,
  scenarios: {
    stampede: { executor: 'constant-vus', vus: num('VUS', 100), duration: DURATION, gracefulStop: '5s' },
  },
  thresholds,
};

export function setup() {
  return { run: `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`, t0: Date.now() };
}

export default function (data) {
  // Wait for the next round boundary, so that all VUs fire together.
  const since = Date.now() - data.t0;
  sleep((ROUND_MS - (since % ROUND_MS)) / 1000);
  const round = Math.floor((Date.now() - data.t0) / ROUND_MS);
  const sep = PATH.includes('?') ? '&' : '?';
  const res = get(`${PATH}${sep}k6-stampede=${data.run}-${round}`, { 'Accept-Encoding': 'identity' });
  check(res, { 'status is 200': (r) => r.status === 200 });
  const cs = cacheStatus(res);
  if (/;\s*collapsed\b/.test(cs)) collapsed.add(1);
  else if (/;\s*stored\b/.test(cs) || /;\s*detail=streaming\b/.test(cs)) fills.add(1);
  else if (/;\s*hit\b/.test(cs)) hits.add(1);
}
