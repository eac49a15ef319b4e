// Hot hits over a mixed asset set: every path warmed in setup(), then VUs ask for
// random paths with a mix of browser Accept-Encoding values. Checks every answer is
// a 200 and (for edge) a cache hit.
//
//   k6 run -e EDGE_URL=http://127.0.0.1:8080 benches/k6/hot_hits.js
//
// Environment (besides common.js): EDGE_PATHS (comma-separated, default the run.sh
// asset set), VUS (default 32), P99_MS (default 50), EXPECT_HIT (default 1: require
// Cache-Status hits; 0 for a server that sends no Cache-Status), HIT_RATIO (default 1).
import { check } from 'k6';
import { Rate } from 'k6/metrics';
import { CLIENT_ENCODINGS, DEFAULT_PATHS, DURATION, flag, get, isHit, list, num, pick } from './common.js';

const PATHS = list('EDGE_PATHS', DEFAULT_PATHS);
const EXPECT_HIT = flag('EXPECT_HIT', true);
const hits = new Rate('edge_hits');

const thresholds = {
  http_req_failed: ['rate==0'],
  http_req_duration: [`p(99)<${num('P99_MS', 50)}`],
  checks: ['rate==1'],
};
if (EXPECT_HIT) thresholds.edge_hits = [`rate>=${num('HIT_RATIO', 1)}`];

export const options = {
  discardResponseBodies: true,
  scenarios: {
    hot_hits: { executor: 'constant-vus', vus: num('VUS', 32), duration: DURATION },
  },
  thresholds,
};

export function setup() {
  // Fill the cache with every representation the clients below will ask for.
  for (const path of PATHS) {
    for (const ae of CLIENT_ENCODINGS) {
      get(path, { 'Accept-Encoding': ae });
    }
  }
}

export default function () {
  const res = get(pick(PATHS), { 'Accept-Encoding': pick(CLIENT_ENCODINGS) });
  check(res, { 'status is 200': (r) => r.status === 200 });
  hits.add(isHit(res));
}
