// Revalidation traffic: clients holding a copy ask with If-None-Match (the exact
// ETag, its weak form, or in a list) and get 304 without a body; one request in ten
// names an ETag that does not match and must get the full 200.
//
//   k6 run -e EDGE_URL=http://127.0.0.1:8080 benches/k6/revalidate.js
//
// Environment (besides common.js): EDGE_PATHS, VUS (default 32), P99_MS (default 50).
import { check } from 'k6';
import { Rate } from 'k6/metrics';
import { DEFAULT_PATHS, DURATION, get, header, list, num, pick } from './common.js';

const PATHS = list('EDGE_PATHS', DEFAULT_PATHS);
const notModified = new Rate('not_modified');

export const options = {
  discardResponseBodies: true,
  scenarios: {
    revalidate: { executor: 'constant-vus', vus: num('VUS', 32), duration: DURATION },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    http_req_duration: [`p(99)<${num('P99_MS', 50)}`],
    checks: ['rate==1'],
    not_modified: ['rate==1'],
  },
};

export function setup() {
  const etags = {};
  for (const path of PATHS) {
    get(path, { 'Accept-Encoding': 'identity' });
    const res = get(path, { 'Accept-Encoding': 'identity' });
    const etag = header(res, 'ETag');
    if (res.status !== 200 || !etag) {
      throw new Error(`${path}: expected 200 with an ETag, got ${res.status} ${etag}`);
    }
    etags[path] = etag;
  }
  return { etags };
}

export default function (data) {
  const path = pick(PATHS);
  const etag = data.etags[path];
  const strong = etag.replace(/^W\//, '');
  const r = Math.random();
  if (r < 0.1) {
    const res = get(path, { 'Accept-Encoding': 'identity', 'If-None-Match': '"k6-no-such-etag"' });
    check(res, { 'unmatched If-None-Match: 200': (x) => x.status === 200 });
    return;
  }
  const value = r < 0.6 ? etag : r < 0.8 ? `W/${strong}` : `"k6-other", ${etag}`;
  const res = get(path, { 'Accept-Encoding': 'gzip, deflate, br, zstd', 'If-None-Match': value });
  const ok = check(res, {
    'If-None-Match: 304': (x) => x.status === 304,
    '304 carries the ETag': (x) => x.status !== 304 || Boolean(header(x, 'ETag')),
  });
  notModified.add(ok);
}
