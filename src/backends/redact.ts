// Secrets never leave a backend inside an error: a decorator that scrubs every error the inner
// backend throws (message, stack, and the chain of causes) of
//  - every secret the backend has issued through it (ExecuteResult.secret), and
//  - anything shaped like an AWS secret access key or the password of a `postgres://` or `mysql://user:pass@` URL.
import type { Backend, BackendStats, ExecuteResult, IssuedBackendSession, ReadOptions, SessionIssueRequest } from './backend.js';
import type { ActualState, Change } from '../core/types.js';
import type { AccessQuery, AccessReading } from '../model/access.js';

export const REDACTED = '[redacted]';

/** 40 base64 characters standing alone. */
const AWS_SECRET = /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])/g;
/**
 * Random base64 has both letter cases (a hex hash has not), and a digit or `+` when it has a `/`
 * (a file path seldom does). A random 40-character key fails this about once in 4,000; the keys
 * datagrant issued are removed by value anyway.
 */
const looksLikeSecret = (m: string) => /[A-Z]/.test(m) && /[a-z]/.test(m) && (/[0-9+]/.test(m) || !m.includes('/'));
const URL_PASSWORD = /\b((?:postgres(?:ql)?|mysql):\/\/[^:/@\s]*:)[^@\s]*@/gi;
/**
 * Fields of an issued secret that identify rather than authenticate (an access key id, a role
 * name), or say where it is used (an RGW key's endpoint and region, named in deadline messages).
 */
const IDENTIFIER_FIELD = /(^|_)(id|user|username|name|endpoint|region)$|Id$/i;
const MIN_SECRET_LENGTH = 8;

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function redactText(text: string, secrets: Iterable<string> = []): string {
  let out = text;
  // Longest first, so a secret containing another is replaced whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
    if (s.length >= MIN_SECRET_LENGTH) out = out.replace(new RegExp(escape(s), 'g'), REDACTED);
    // URL-encoded forms show up in connection strings.
    const enc = encodeURIComponent(s);
    if (enc !== s && enc.length >= MIN_SECRET_LENGTH) out = out.replace(new RegExp(escape(enc), 'g'), REDACTED);
  }
  out = out.replace(AWS_SECRET, (m) => (looksLikeSecret(m) ? REDACTED : m));
  out = out.replace(URL_PASSWORD, `$1${REDACTED}@`);
  return out;
}

/** Scrubs `e` in place (message, stack, causes) and returns it, so its class and fields survive. */
export function redactError<T>(e: T, secrets: Iterable<string> = []): T {
  const list = [...secrets];
  const seen = new Set<unknown>();
  let cur: unknown = e;
  while (cur && typeof cur === 'object' && !seen.has(cur)) {
    seen.add(cur);
    const err = cur as { message?: unknown; stack?: unknown; cause?: unknown };
    for (const field of ['message', 'stack'] as const) {
      if (typeof err[field] === 'string') {
        try {
          Object.defineProperty(err, field, { value: redactText(err[field], list), writable: true, configurable: true, enumerable: false });
        } catch {
          // a frozen error: nothing can be changed, and it came from our own code
        }
      }
    }
    cur = err.cause;
  }
  if (typeof e === 'string') return redactText(e, list) as T;
  return e;
}

export class RedactingBackend implements Backend {
  readonly #inner: Backend;
  readonly #secrets = new Set<string>();

  constructor(inner: Backend) {
    this.#inner = inner;
  }

  get name() {
    return this.#inner.name;
  }
  get type() {
    return this.#inner.type;
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw redactError(e, this.#secrets);
    }
  }

  read(opts: ReadOptions): Promise<ActualState> {
    return this.#guard(() => this.#inner.read(opts));
  }

  async execute(change: Change): Promise<ExecuteResult> {
    const res = await this.#guard(() => this.#inner.execute(change));
    for (const [field, value] of Object.entries(res.secret ?? {})) {
      if (!IDENTIFIER_FIELD.test(field)) this.#secrets.add(value);
    }
    return res;
  }

  get issueSession(): ((req: SessionIssueRequest) => Promise<IssuedBackendSession>) | undefined {
    const inner = this.#inner;
    if (!inner.issueSession) return undefined;
    // A session's secrets are not kept for later errors, as issued keys are: no later call of the
    // driver handles them, and serve keeps its drivers open while issuing hundreds of sessions a
    // second, which would grow the set (and every later scrub) without bound.
    return (req) => this.#guard(() => inner.issueSession!(req));
  }

  get readAccess(): ((query: AccessQuery) => Promise<AccessReading>) | undefined {
    const inner = this.#inner;
    if (!inner.readAccess) return undefined;
    return (query) => this.#guard(() => inner.readAccess!(query));
  }

  stats(): BackendStats {
    return this.#inner.stats();
  }

  close(): Promise<void> {
    return this.#guard(() => this.#inner.close());
  }
}

export function withRedaction(backend: Backend): Backend {
  return new RedactingBackend(backend);
}

/** A connection URL with its password left out, for messages that name where a call went. */
export function urlWithoutPassword(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '(an unparseable URL)';
  }
}

export { redactUrl } from '../core/url.js';
