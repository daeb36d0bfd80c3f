// AWS SDK errors → BackendError with the AWS error code, and which of them are worth retrying.
// Throttling and network faults are recognised by the classification every driver shares
// (../retry.ts); what is AWS's own — its service codes, its HTTP status — is recognised here.
import { BackendError } from '../../core/errors.js';
import { isNetworkFault, isThrottleCode, networkErrorCode } from '../retry.js';

const TRANSIENT = new Set([
  'ServiceUnavailable',
  'InternalFailure',
  'InternalError',
  'ServiceFailure',
  'RequestTimeout',
  'TimeoutError',
  // IAM's answer to two writers on one entity at once.
  'ConcurrentModification',
]);

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** `NoSuchEntityException` and `NoSuchEntity` are the same code; network errors give their errno. */
export function awsErrorCode(e: unknown): string | undefined {
  const network = networkErrorCode(e);
  if (network !== undefined) return network;
  const err = (e ?? {}) as SdkError;
  const raw = err.Code ?? (err.name && err.name !== 'Error' ? err.name : undefined);
  return raw?.replace(/Exception$/, '');
}

export function isThrottling(e: unknown): boolean {
  const code = awsErrorCode(e);
  return (code !== undefined && isThrottleCode(code)) || (e as SdkError | undefined)?.$metadata?.httpStatusCode === 429;
}

export function isRetryable(e: unknown): boolean {
  const code = awsErrorCode(e);
  if (isThrottling(e) || (code !== undefined && TRANSIENT.has(code)) || networkErrorCode(e) !== undefined) return true;
  const status = (e as SdkError | undefined)?.$metadata?.httpStatusCode;
  // An answer from AWS says what happened; only a request without one is judged by its message.
  if (status !== undefined) return status >= 500;
  return isNetworkFault(e);
}

export function toBackendError(e: unknown, backend: string, address?: string): BackendError {
  if (e instanceof BackendError) return e;
  const code = awsErrorCode(e);
  const message = (e as Error)?.message ?? String(e);
  // AWS names the action it refused; where that is datagrant's own policy, say where the policy it needs comes from.
  const hint = code === 'AccessDenied' ? " (`datagrant iam-policy` prints the policy datagrant's own identity needs)" : '';
  return new BackendError(`${backend}: ${address ? `${address}: ` : ''}${code ? `${code}: ` : ''}${message}${hint}`, backend, code, isRetryable(e), address);
}

/** Runs `fn`, taking the given AWS error codes for success (undefined): removing what is already gone, say. */
export async function tolerate<T>(codes: string[], fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    if (codes.includes(awsErrorCode(e) ?? '')) return undefined;
    throw e;
  }
}
