import { DatagrantError } from '../../core/errors.js';

/**
 * Signing in, a stored login, or a session from serve did not work out. The message tells the
 * person what to do next; it never holds a token or a secret.
 */
export class LoginError extends DatagrantError {
  override name = 'LoginError';
}

/** Text from another server (an IdP's error_description, serve's message), made safe to print on one line. */
export function remoteText(s: unknown, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const text = (typeof s === 'string' ? s : (JSON.stringify(s) ?? '')).replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
