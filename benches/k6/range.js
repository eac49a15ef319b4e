// Range requests on a large object: random closed, open-ended and suffix ranges,
// some with If-Range naming the current ETag, a few multi-range. Checks 206, the
// Content-Range and the exact body length of every answer.
//
//   k6 run -e EDGE_URL=http://127.0.0.1:8080 -e LARGE_PATH=/files/large.bin benches/k6/range.js
//
// Environment (besides common.js): LARGE_PATH (default /files/large.bin), MAX_SPAN
// (largest range in bytes, default 1048576), VUS (default 16), P99_MS (default 200).
import { check } from 'k6';
import { DURATION, get, header, num } from './common.js';

const PATH = __ENV.LARGE_PATH || '/files/large.bin';
const MAX_SPAN = num('MAX_SPAN', 1 << 20);

export const options = {
  scenarios: {
    ranges: { executor: 'constant-vus', vus: num('VUS', 16), duration: DURATION },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    http_req_duration: [`p(99)<${num('P99_MS', 200)}`],
    checks: ['rate==1'],
  },
};

export function setup() {
  // Fill the cache with the whole object, then learn its size and validator.
  get(PATH, { 'Accept-Encoding': 'identity' }, { responseType: 'none' });
  const res = get(PATH, { 'Accept-Encoding': 'identity', Range: 'bytes=0-0' }, { responseType: 'none' });
  const cr = header(res, 'Content-Range') || '';
  const m = /^bytes 0-0\/(\d+)$/.exec(cr);
  if (res.status !== 206 || !m) {
    throw new Error(`${PATH}: expected 206 with Content-Range bytes 0-0/N, got ${res.status} "${cr}"`);
  }
  return { size: Number(m[1]), etag: header(res, 'ETag') || null };
}

function randInt(lo, hi) {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}

export default function (data) {
  const size = data.size;
  const span = Math.min(MAX_SPAN, size);
  const kind = Math.random();
  const headers = { 'Accept-Encoding': 'identity' };
  let first;
  let last;
  if (kind < 0.1) {
    // Two ranges: multipart/byteranges; only the status and type are checked.
    const a = randInt(0, size - 2);
    headers.Range = `bytes=0-0,${a}-${a + 1}`;
    const res = get(PATH, headers, { responseType: 'binary' });
    check(res, {
      'multi-range: 206': (r) => r.status === 206,
      'multi-range: multipart/byteranges': (r) => (header(r, 'Content-Type') || '').startsWith('multipart/byteranges'),
    });
    return;
  } else if (kind < 0.3) {
    const n = randInt(1, span);
    headers.Range = `bytes=-${n}`;
    first = size - n;
    last = size - 1;
  } else if (kind < 0.45) {
    first = randInt(size - span, size - 1);
    headers.Range = `bytes=${first}-`;
    last = size - 1;
  } else {
    first = randInt(0, size - 1);
    last = Math.min(size - 1, first + randInt(0, span - 1));
    headers.Range = `bytes=${first}-${last}`;
  }
  if (data.etag && Math.random() < 0.25) headers['If-Range'] = data.etag;
  const res = get(PATH, headers, { responseType: 'binary' });
  check(res, {
    '206': (r) => r.status === 206,
    'Content-Range': (r) => header(r, 'Content-Range') === `bytes ${first}-${last}/${size}`,
    'body length': (r) => r.body !== null && r.body.byteLength === last - first + 1,
  });
}
