// What goes wrong talking to a RADOS gateway → BackendError, and which of it is worth retrying.
// Throttling and network faults are recognised by the classification every driver shares
// (../retry.ts). RGW's own answers come two ways: the admin ops API's JSON `{"Code": …}` with an
// HTTP status, and its IAM API, whose errors carry no code at all (a missing user or policy is a
// bare 404), so there the status is what tells.
import { BackendError } from '../../core/errors.js';
import { isNetworkFault, isThrottleCode, networkErrorCode } from '../retry.js';

/** A non-2xx answer of the admin ops API. Its body is never kept: some answers carry keys. */
export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status}${code ? ` ${code}` : ''}`);
    this.name = 'AdminApiError';
  }
}

interface SdkError {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const statusOf = (e: unknown): number | undefined => (e instanceof AdminApiError ? e.status : ((e ?? {}) as SdkError).$metadata?.httpStatusCode);

/**
 * The error's code: the admin API's, a network errno, or for the IAM API `NoSuchEntity` on a 404
 * (RGW names neither the user nor the policy that is missing) and the SDK's name otherwise.
 */
export function rgwErrorCode(e: unknown): string | undefined {
  if (e instanceof AdminApiError) return e.code || undefined;
  const network = networkErrorCode(e);
  if (network !== undefined) return network;
  const err = (e ?? {}) as SdkError;
  if (err.$metadata?.httpStatusCode === 404) return 'NoSuchEntity';
  const raw = err.Code ?? (err.name && err.name !== 'Error' ? err.name : undefined);
  return raw?.replace(/Exception$/, '');
}

/**
 * What the admin API and IAM API say of a user or policy that is not there. (A key that is not
 * there is `InvalidAccessKeyId`, which is also the answer to an admin key the gateway does not
 * know: only the key handler, asking about one key, may read it as gone.)
 */
const GONE = new Set(['NoSuchUser', 'NoSuchKey', 'NoSuchEntity']);

export function isGone(e: unknown): boolean {
  return GONE.has(rgwErrorCode(e) ?? '');
}

export function isThrottling(e: unknown): boolean {
  const code = rgwErrorCode(e);
  return (code !== undefined && isThrottleCode(code)) || statusOf(e) === 429;
}

export function isRetryable(e: unknown): boolean {
  if (isThrottling(e) || networkErrorCode(e) !== undefined) return true;
  const status = statusOf(e);
  // An answer from the gateway says what happened; only a request without one is judged by its message.
  if (status !== undefined) return status >= 500;
  return isNetworkFault(e);
}

export function toBackendError(e: unknown, backend: string, address?: string): BackendError {
  if (e instanceof BackendError) return e;
  const code = rgwErrorCode(e);
  const status = statusOf(e);
  const err = (e ?? {}) as SdkError;
  // The SDK's message for an RGW IAM error is "UnknownError": the status says more.
  const message = e instanceof AdminApiError ? e.message : err.message && err.message !== 'UnknownError' ? err.message : `HTTP ${status ?? '?'}`;
  return new BackendError(
    `${backend}: ${address ? `${address}: ` : ''}${code && !message.includes(code) ? `${code}: ` : ''}${message}`,
    backend,
    code,
    isRetryable(e),
    address,
  );
}

/** Runs `fn`; what is already gone counts as done (undefined). */
export async function unlessGone<T>(fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (isGone(e)) return undefined;
    throw e;
  }
}
