// GraphQL-over-HTTP conformance: `node audit.mjs <url> <api key>` runs graphql-http's serverAudits
// with the key on every request; exits non-zero on any MUST failure. `.ci/run` runs it.
import { serverAudits } from 'graphql-http';
const url = process.argv[2];
const key = process.argv[3];
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
};
let failures = 0, warns = 0;
for (const audit of serverAudits({ url, fetchFn })) {
  const r = await audit.fn();
  if (r.status === 'error') { failures++; console.log('MUST FAIL', audit.name, r.reason); }
  else if (r.status === 'warn') { warns++; console.log('SHOULD warn', audit.name, r.reason); }
}
console.log(`audit: ${failures} MUST failures, ${warns} warnings`);
process.exit(failures ? 1 : 0);
