// SQL text helpers. Every identifier the driver sends goes through `ident`; every literal that
// cannot be a bind parameter (COMMENT, VALID UNTIL, PASSWORD) through `literal`.
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

export function ident(name: string): string {
  if (name.length === 0 || name.includes('\0')) throw new Error(`invalid SQL identifier ${JSON.stringify(name)}`);
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal; standard_conforming_strings is on since PostgreSQL 9.1, so only ' needs doubling. */
export function literal(value: string): string {
  if (value.includes('\0')) throw new Error('a SQL literal cannot contain NUL');
  if (value.includes('\\')) return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
  return `'${value.replace(/'/g, "''")}'`;
}

/** `schema.table` with both parts quoted. */
export const qualified = (schema: string, name: string) => `${ident(schema)}.${ident(name)}`;

/** 32 random bytes, base64url: 43 characters, no SASLprep surprises. */
export function generatePassword(): string {
  return randomBytes(32).toString('base64url');
}

export const SCRAM_ITERATIONS = 4096;

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802 and 7677):
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. Sent in `ALTER ROLE … PASSWORD`,
 * PostgreSQL stores it as is, so the clear password never reaches the server or its logs.
 * The key derivation runs on libuv's thread pool: a thousand new roles do not stall the event loop.
 */
export async function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = SCRAM_ITERATIONS): Promise<string> {
  const salted = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** A short fingerprint of a stored verifier, kept in the role's comment to notice a password changed by hand. */
export function verifierFingerprint(verifier: string): string {
  return createHash('sha256').update(verifier).digest('hex').slice(0, 16);
}
