// Envelope for stored secrets: AES-256-GCM under the master key, bound to the credential's
// address and id as associated data, so a ciphertext moved to another row does not decrypt.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { StoreError } from '../core/errors.js';

export interface Sealed {
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export class MasterKey {
  readonly #encryption: Buffer;
  readonly #audit: Buffer;
  readonly #plan: Buffer;
  readonly #check: Buffer;
  readonly #backup: Buffer;

  constructor(raw: Buffer) {
    if (raw.length !== 32) throw new StoreError('the master key must be 32 bytes (64 hex characters or 44 base64 characters)');
    // Separate keys per purpose, derived from the one master key.
    this.#encryption = Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), 'datagrant/credentials/v1', 32));
    this.#audit = Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), 'datagrant/audit/v1', 32));
    this.#plan = Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), 'datagrant/plan/v1', 32));
    this.#check = Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), 'datagrant/key-check/v1', 32));
    this.#backup = Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), 'datagrant/backup/v1', 32));
  }

  static parse(text: string): MasterKey {
    const t = text.trim();
    if (/^[0-9a-fA-F]{64}$/.test(t)) return new MasterKey(Buffer.from(t, 'hex'));
    const b = Buffer.from(t, 'base64');
    if (b.length === 32) return new MasterKey(b);
    throw new StoreError('the master key must be 32 bytes, written as 64 hex characters or as base64');
  }

  static generate(): string {
    return randomBytes(32).toString('hex');
  }

  seal(plaintext: string, associated: string): Sealed {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#encryption, nonce);
    cipher.setAAD(Buffer.from(associated));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { nonce, ciphertext, tag: cipher.getAuthTag() };
  }

  open(sealed: Sealed, associated: string): string {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#encryption, sealed.nonce);
      decipher.setAAD(Buffer.from(associated));
      decipher.setAuthTag(sealed.tag);
      return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new StoreError(`cannot decrypt the credential for ${associated}: wrong master key, or the stored row was altered`);
    }
  }

  /**
   * The key-check value a store keeps: it tells the right key from a wrong one before anything is
   * read or written, and reveals nothing about the key (a MAC of a constant under a derived key).
   */
  keyCheck(): string {
    return createHmac('sha256', this.#check).update('datagrant key check').digest('hex');
  }

  /** MAC of a saved plan: an edited plan file, or one made under another key, does not verify. */
  planMac(data: string): string {
    return createHmac('sha256', this.#plan).update(data).digest('hex');
  }

  /**
   * MAC of a backup file's content, given as the pieces of its canonical form (a backup can be
   * larger than one buffer should be): a backup edited without the key does not verify.
   */
  backupMac(parts: Iterable<Uint8Array>): string {
    const mac = createHmac('sha256', this.#backup);
    for (const part of parts) mac.update(part);
    return mac.digest('hex');
  }

  /**
   * The key that seals the web console's session cookies (serve, /ui): any replica with the master
   * key opens them, and a new master key ends every console session.
   */
  consoleSessionKey(): Uint8Array {
    return new Uint8Array(hkdfSync('sha256', this.#encryption, Buffer.alloc(0), 'datagrant/console-session/v1', 32));
  }

  /** Keyed hash for the audit chain: without the master key, entries cannot be forged. */
  auditMac(data: string): string {
    return createHmac('sha256', this.#audit).update(data).digest('hex');
  }
}
