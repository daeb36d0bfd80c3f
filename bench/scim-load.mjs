// Load generator for bench/scim.ts (plain JavaScript: workers do not inherit tsx), run in a worker thread so that measuring never competes with
// the server for its event loop (as a separate client process would not).
import { Agent, request } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';

/** @type {{ url: string, token: string, connections: number, requests: number, kind: 'get'|'filter'|'post'|'patch', ids: string[], ok: number }} */
const job = workerData;
const url = new URL(job.url);
const agent = new Agent({ keepAlive: true, maxSockets: job.connections });

function call(method, path, body) {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path: `/scim/v2${path}`, agent, headers: { authorization: `Bearer ${job.token}`, ...(data ? { 'content-type': 'application/scim+json', 'content-length': data.length } : {}) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

const make = (i) => {
  const id = job.ids[i % job.ids.length];
  switch (job.kind) {
    case 'get':
      return call('GET', `/Users/${id}`);
    case 'filter':
      return call('GET', `/Users?filter=${encodeURIComponent(`userName eq "seed${i % job.ids.length}@example.com"`)}`);
    case 'post':
      return call('POST', '/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `new${i}@example.com`, active: true });
    case 'patch':
      return call('PATCH', `/Users/${id}`, { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: i % 2 === 1 } }] });
  }
};

const lat = [];
let next = 0;
let bad = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: job.connections }, async () => {
    for (let i = next++; i < job.requests; i = next++) {
      const t = performance.now();
      const status = await make(i);
      lat.push(performance.now() - t);
      if (status !== job.ok) bad++;
    }
  }),
);
agent.destroy();
parentPort.postMessage({ seconds: (performance.now() - t0) / 1000, latencies: lat, bad });
