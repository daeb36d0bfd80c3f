// AWS's per-action rate limits in front of moto: a token bucket per IAM/STS query action
// (`Action=` in the form body) that refuses a request over the rate the way AWS does, with HTTP
// 400 and a `Throttling` error, before moto sees it. Requests without an action (S3) pass.
import { randomUUID } from 'node:crypto';
import { startProxy, type CountingProxy } from './http-proxy.js';

export interface ThrottleOptions {
  /** Requests per second each action lets through. */
  ratePerSecond: number;
  /** Requests an idle action lets through at once (default: one second's worth). */
  burst?: number;
  /** Per action, overriding `ratePerSecond` (0: every request is refused). */
  rates?: Record<string, number>;
}

export interface ThrottlingProxy extends CountingProxy {
  /** Requests received (throttled ones included) and refused, since the last reset, by action. */
  stats(): { requests: number; throttled: number; byAction: Record<string, { requests: number; throttled: number }> };
}

export async function startThrottlingProxy(target: string, opts: ThrottleOptions): Promise<ThrottlingProxy> {
  const proxy = (await startProxy(target)) as ThrottlingProxy;
  const buckets = new Map<string, { tokens: number; at: number; rate: number; burst: number }>();
  let byAction: Record<string, { requests: number; throttled: number }> = {};
  const forwardedCount = proxy.reset.bind(proxy);
  proxy.reset = () => {
    forwardedCount();
    byAction = {};
  };
  proxy.stats = () => {
    const all = Object.values(byAction);
    return { requests: all.reduce((n, a) => n + a.requests, 0), throttled: all.reduce((n, a) => n + a.throttled, 0), byAction: structuredClone(byAction) };
  };
  proxy.onReceived = (_req, body) => {
    const action = new URLSearchParams(body).get('Action');
    if (!action) return undefined;
    const now = performance.now();
    let b = buckets.get(action);
    if (!b) {
      const rate = opts.rates?.[action] ?? opts.ratePerSecond;
      const burst = rate === 0 ? 0 : (opts.burst ?? rate);
      buckets.set(action, (b = { tokens: burst, at: now, rate, burst }));
    }
    b.tokens = Math.min(b.burst, b.tokens + ((now - b.at) / 1000) * b.rate);
    b.at = now;
    const counts = (byAction[action] ??= { requests: 0, throttled: 0 });
    counts.requests++;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    counts.throttled++;
    return {
      status: 400,
      body: `<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
    };
  };
  return proxy;
}
