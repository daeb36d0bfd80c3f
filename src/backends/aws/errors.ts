// AWS SDK errors → BackendError with the AWS error code, and which of them are worth retrying.
import { BackendError } from '../../core/errors.js';

const THROTTLING = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'RequestLimitExceeded',
  'TooManyRequests',
  'TooManyRequestsException',
  'SlowDown',
  'ProvisionedThroughputExceededException',
]);

const TRANSIENT = new Set([
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalFailure',
  'InternalError',
  'ServiceFailure',
  'ServiceFailureException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  // IAM's answer to two writers on one entity at once.
  'ConcurrentModification',
  'ConcurrentModificationException',
]);

const NETWORK = /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|ETIMEDOUT|EPIPE|EAI_AGAIN|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|UND_ERR_\w+)$/;

interface SdkError {
  name?: string;
  Code?: string;
  code?: unknown;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

/** `NoSuchEntityException` and `NoSuchEntity` are the same code; network errors give their errno. */
export function awsErrorCode(e: unknown): string | undefined {
  const err = (e ?? {}) as SdkError;
  if (typeof err.code === 'string' && NETWORK.test(err.code)) return err.code;
  const raw = err.Code ?? (err.name && err.name !== 'Error' ? err.name : undefined);
  return raw?.replace(/Exception$/, '');
}

export function isThrottling(e: unknown): boolean {
  const err = (e ?? {}) as SdkError;
  const code = awsErrorCode(e);
  return (code !== undefined && (THROTTLING.has(code) || THROTTLING.has(`${code}Exception`))) || err.$metadata?.httpStatusCode === 429;
}

export function isRetryable(e: unknown): boolean {
  const err = (e ?? {}) as SdkError;
  const code = awsErrorCode(e);
  if (isThrottling(e)) return true;
  if (code !== undefined && (TRANSIENT.has(code) || NETWORK.test(code))) return true;
  const status = err.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return true;
  return /socket hang up|ECONNRESET|network|fetch failed/i.test(err.message ?? '') && status === undefined;
}

export function toBackendError(e: unknown, backend: string, address?: string): BackendError {
  if (e instanceof BackendError) return e;
  const code = awsErrorCode(e);
  const message = (e as Error)?.message ?? String(e);
  return new BackendError(`${backend}: ${address ? `${address}: ` : ''}${code ? `${code}: ` : ''}${message}`, backend, code, isRetryable(e), address);
}
