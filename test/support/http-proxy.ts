// A loopback HTTP proxy in front of moto: counts the requests a backend really receives, can
// answer a request itself instead of passing it on (throttling, see throttle-proxy.ts), and can
// run a hook after the k-th request was executed by moto but before its response is delivered
// (the worst moment for a crash: the side effect happened, the caller never heard).
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CountingProxy {
  endpoint: string;
  /** Requests forwarded so far. */
  count(): number;
  reset(): void;
  /** Called with every request before it is passed on: return a response to answer it here instead. */
  onReceived?: (req: IncomingMessage, body: string) => { status: number; body: string } | undefined;
  /**
   * Called with the request number after moto answered it: return true to withhold the response
   * (the caller is being killed), or 503 to answer with a service error instead of moto's answer.
   */
  onForwarded?: (n: number, req: IncomingMessage, body: string) => boolean | 503;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<CountingProxy> {
  const t = new URL(target);
  let n = 0;
  const proxy: CountingProxy = {
    endpoint: '',
    count: () => n,
    reset: () => {
      n = 0;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = proxy.onReceived?.(req, Buffer.concat(chunks).toString('utf8'));
      if (answer) {
        res.writeHead(answer.status, { 'Content-Type': 'text/xml' });
        res.end(answer.body);
        return;
      }
      const fwd = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
        const body: Buffer[] = [];
        up.on('data', (c: Buffer) => body.push(c));
        up.on('end', () => {
          const k = ++n;
          const verdict = proxy.onForwarded?.(k, req, Buffer.concat(chunks).toString('utf8'));
          if (verdict === 503) {
            res.writeHead(503, { 'Content-Type': 'text/xml' });
            res.end(
              '<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>injected after the request was executed</Message></Error><RequestId>x</RequestId></ErrorResponse>',
            );
            return;
          }
          if (verdict) return; // response withheld: the caller is killed meanwhile
          res.writeHead(up.statusCode ?? 502, up.headers);
          res.end(Buffer.concat(body));
        });
      });
      fwd.on('error', (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      fwd.end(Buffer.concat(chunks));
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
