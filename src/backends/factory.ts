// Spec backends → drivers, each wrapped in the cross-cutting decorators (retry, redaction).
import type { Spec } from '../spec/schema.js';
import { DEFAULT_IAM_PATH } from '../model/aws.js';
import { createAwsBackend } from './aws/driver.js';
import type { Backend } from './backend.js';
import { deadlinesOf } from './deadline.js';
import { createMysqlBackend } from './mysql/driver.js';
import { createPostgresBackend } from './postgres/driver.js';
import { DEFAULT_USER_PREFIX } from '../model/rgw.js';
import { createRgwBackend } from './rgw/driver.js';
import { withRedaction } from './redact.js';
import { DEFAULT_RETRY, withRetry } from './retry.js';

export interface BackendOptions {
  /** Decorate each driver further (tests inject faults here). */
  wrap?: (b: Backend) => Backend;
  maxAttempts?: number;
  /** This state's installation id, carried by what the drivers create. */
  installation?: string;
}

export function makeBackends(spec: Pick<Spec, 'backends'>, opts: BackendOptions = {}): Record<string, Backend> {
  const out: Record<string, Backend> = {};
  const installation = opts.installation ? { installation: opts.installation } : {};
  for (const [name, b] of Object.entries(spec.backends)) {
    const deadlines = deadlinesOf(b.timeouts);
    let driver: Backend =
      b.type === 'aws'
        ? createAwsBackend({
            name,
            iamPath: b.iamPath ?? DEFAULT_IAM_PATH,
            ...(b.region ? { region: b.region } : {}),
            ...(b.endpoint ? { endpoint: b.endpoint } : {}),
            ...(b.assumeRole ? { assumeRole: b.assumeRole } : {}),
            ...installation,
            deadlines,
          })
        : b.type === 'rgw'
          ? createRgwBackend({
              name,
              endpoint: b.endpoint,
              ...(b.region ? { region: b.region } : {}),
              credentials: { accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey },
              userPrefix: b.userPrefix ?? DEFAULT_USER_PREFIX,
              ...installation,
              deadlines,
            })
          : b.type === 'mysql'
            ? createMysqlBackend({ name, url: b.url, ...(b.scope ? { scope: b.scope } : {}), ...installation, deadlines })
            : createPostgresBackend({ name, url: b.url, ...(b.scope ? { scope: b.scope } : {}), ...installation, deadlines });
    if (opts.wrap) driver = opts.wrap(driver);
    out[name] = withRedaction(withRetry(driver, { ...DEFAULT_RETRY, maxAttempts: opts.maxAttempts ?? DEFAULT_RETRY.maxAttempts }));
  }
  return out;
}

export async function closeBackends(backends: Record<string, Backend>): Promise<void> {
  await Promise.all(Object.values(backends).map((b) => b.close()));
}
