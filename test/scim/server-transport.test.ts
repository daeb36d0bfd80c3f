// What only real sockets show: a client that sends a large body before it reads gets its 413
// (not a broken pipe), and what Node refuses before Fastify sees a request (431 for an over-long
// URL, 400 for one that is not HTTP) still has a SCIM error body. Run against the server in this
// process and against the built `datagrant serve` (run `npm run build` first).
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ERROR_SCHEMA } from '../../src/scim/errors.js';
import { buildScimServer, DRAIN_LIMIT, hashToken } from '../../src/scim/server.js';
import { SqliteScimStore } from '../../src/scim/store/sqlite.js';
import { served, TOKEN } from './helpers.js';

interface Answer {
  /** Everything the server sent, as text. */
  text: string;
  /** The error writing the request met, if any (EPIPE, ECONNRESET: the answer was lost). */
  writeError?: string;
}

/**
 * Send `head` and then `size` bytes of body as fast as the socket takes them, like a client that
 * writes the whole request before it reads; the answer is what arrived by the time the server
 * closed, or `settleMs` after the last byte went out.
 */
function send(port: number, head: string, size: number, opts: { chunked?: boolean; then?: string; settleMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, '127.0.0.1');
    let text = '';
    let writeError: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text, ...(writeError ? { writeError } : {}) });
    };
    s.on('data', (d) => (text += d.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => {
      writeError ??= e.code ?? e.message;
      done();
    });
    s.on('close', done);
    s.write(head);
    const block = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = (): void => {
      while (sent < size) {
        const n = Math.min(block.length, size - sent);
        sent += n;
        const part = opts.chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), block.subarray(0, n), Buffer.from('\r\n')]) : block.subarray(0, n);
        if (!s.write(part)) return void s.once('drain', pump);
      }
      if (opts.chunked) s.write('0\r\n\r\n');
      if (opts.then) s.write(opts.then);
      timer = setTimeout(done, opts.settleMs ?? 1000);
    };
    pump();
  });
}

const post = (size: number, extra = '') =>
  `POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/scim+json\r\n${size >= 0 ? `Content-Length: ${size}\r\n` : 'Transfer-Encoding: chunked\r\n'}${extra}\r\n`;

/** The HTTP responses in `text`: status, headers (lower-case names) and body. */
function responses(text: string): { status: number; headers: Record<string, string>; body: string }[] {
  const out = [];
  let rest = text;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    const lines = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

const scimError = (status: number, scimType?: string) => ({
  schemas: [ERROR_SCHEMA],
  status: String(status),
  ...(scimType ? { scimType } : {}),
  detail: expect.any(String),
});

describe.each([
  [
    'the server in this process',
    async () => {
      const store = new SqliteScimStore(':memory:');
      const app = buildScimServer({ store, tokenHashes: [hashToken(TOKEN)] });
      await app.listen({ host: '127.0.0.1', port: 0 });
      return { port: (app.server.address() as { port: number }).port, close: async () => (await app.close(), await store.close()) };
    },
  ],
  [
    'the built datagrant serve',
    async () => {
      const s = await served();
      return { port: s.serve.port, close: () => s.close() };
    },
  ],
])('%s', (_how, start) => {
  let server: { port: number; close(): Promise<void> };
  beforeAll(async () => {
    server = await start();
  });
  afterAll(async () => server?.close());

  describe('413: a client that writes an 8 MiB body before reading gets the answer', () => {
    test.each([
      ['with Content-Length', 8 * 1024 * 1024, ''],
      ['chunked', -1, ''],
      ['asking to close the connection (as Python urllib does)', 8 * 1024 * 1024, 'Connection: close\r\n'],
    ])('%s', async (_what, length, extra) => {
      const a = await send(server.port, post(length, extra), 8 * 1024 * 1024, { chunked: length < 0 });
      expect(a.writeError).toBeUndefined();
      const [r] = responses(a.text);
      expect(r?.status).toBe(413);
      expect(r?.headers['content-type']).toBe('application/scim+json; charset=utf-8');
      expect(JSON.parse(r!.body)).toEqual(scimError(413));
    });

    test('and the connection stays usable for the next request', async () => {
      const a = await send(server.port, post(4 * 1024 * 1024), 4 * 1024 * 1024, { then: 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' });
      expect(responses(a.text).map((r) => [r.status, r.body.slice(0, 20)])).toEqual([
        [413, '{"schemas":["urn:iet'],
        [200, '{"status":"ok"}'],
      ]);
    });
  });

  test(`a body declared larger than ${DRAIN_LIMIT / 1024 / 1024} MiB is answered at once and the connection closed`, async () => {
    const a = await send(server.port, post(DRAIN_LIMIT + 1), 256 * 1024);
    const [r] = responses(a.text);
    expect(r?.status).toBe(413);
    expect(r?.headers.connection).toBe('close');
    expect(JSON.parse(r!.body)).toEqual(scimError(413));
  });

  test.each([
    ['a 20 KiB URL', 431, undefined, `GET /scim/v2/Users?filter=${'a'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`],
    ['a 1 MiB header', 431, undefined, `GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(1024 * 1024)}\r\n\r\n`],
    ['a request line that is not HTTP', 400, 'invalidSyntax', 'GET /scim/v2/Users HTTP/9.x\r\n\r\n'],
  ])('%s: %i with a SCIM error body', async (_what, status, scimType, request) => {
    const a = await send(server.port, request, 0);
    expect(a.writeError).toBeUndefined();
    const [r] = responses(a.text);
    expect(r?.status).toBe(status);
    expect(r?.headers['content-type']).toBe('application/scim+json; charset=utf-8');
    expect(r?.headers.connection).toBe('close');
    expect(JSON.parse(r!.body)).toEqual(scimError(status, scimType));
  });

  test('fetch sees the 431 and its SCIM body too', async () => {
    const r = await fetch(`http://127.0.0.1:${server.port}/scim/v2/Users?filter=${'a'.repeat(20 * 1024)}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.status).toBe(431);
    expect(await r.json()).toEqual(scimError(431));
  });
});
