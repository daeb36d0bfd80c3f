// A master key wrapped by AWS KMS (envelope encryption): `init --kms-key ARN` asks KMS for a data
// key, keeps only the wrapped copy (master.key.kms, or DATAGRANT_MASTER_KEY_KMS) and never writes
// the plaintext; every start unwraps it with KMS Decrypt and then checks it against the state's
// key check like any other key. The encryption context names the installation, so a key policy
// (kms:EncryptionContext:installation) can let each installation's role unwrap only its own key,
// and KMS's log says which installation asked.
import { DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { StoreError } from '../core/errors.js';
import { MasterKey } from './crypto.js';

export interface KmsKeyFile {
  version: 1;
  kms: {
    /** The KMS key that wraps it: its ARN, as KMS reported it. */
    keyId: string;
    installation: string;
    /** The wrapped data key (CiphertextBlob), base64. */
    ciphertext: string;
  };
}

/** Like every backend call, KMS calls have deadlines: a start never hangs on an unanswering KMS. */
const CONNECT_MS = 10_000;
const REQUEST_MS = 30_000;

const context = (installation: string) => ({ purpose: 'datagrant-master-key', installation });

/** The region of a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), so an ARN works whatever AWS_REGION says. */
function regionOf(keyId: string, env: NodeJS.ProcessEnv): string {
  return /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/.exec(keyId)?.[1] ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
}

function client(keyId: string, env: NodeJS.ProcessEnv): KMSClient {
  return new KMSClient({
    region: regionOf(keyId, env),
    maxAttempts: 2,
    requestHandler: { connectionTimeout: CONNECT_MS, requestTimeout: REQUEST_MS, throwOnRequestTimeout: true, socketTimeout: REQUEST_MS },
  });
}

function kmsError(what: string, keyId: string, e: unknown, hint: string): StoreError {
  const err = (e ?? {}) as { name?: string; message?: string };
  if (err.name === 'TimeoutError') {
    return new StoreError(`${what}: no answer from KMS for ${keyId} within its deadline (${err.message ?? 'timeout'}); nothing was read or changed`);
  }
  // An answer the SDK could not read still has its status: a 403 is a refusal, whatever its body.
  const status = (e as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  const why = err.name === 'SyntaxError' && status === 403 ? 'access denied (HTTP 403)' : `${err.name ?? 'Error'}: ${err.message ?? String(e)}`;
  return new StoreError(`${what}: KMS refused (${why}). ${hint}; nothing was read or changed`);
}

/** A new master key from KMS: the key for this run, and the file that keeps it wrapped. */
export async function generateWrappedKey(keyId: string, installation: string, env: NodeJS.ProcessEnv): Promise<{ key: MasterKey; file: KmsKeyFile }> {
  const kms = client(keyId, env);
  try {
    const r = await kms.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: context(installation) }));
    if (!r.Plaintext || !r.CiphertextBlob) throw new StoreError(`KMS GenerateDataKey for ${keyId} returned no key`);
    const plain = Buffer.from(r.Plaintext);
    const key = new MasterKey(plain);
    plain.fill(0);
    r.Plaintext.fill(0);
    return { key, file: { version: 1, kms: { keyId: r.KeyId ?? keyId, installation, ciphertext: Buffer.from(r.CiphertextBlob).toString('base64') } } };
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw kmsError(
      `cannot make a master key with KMS key ${keyId}`,
      keyId,
      e,
      'Check the key ARN, that the key is enabled, and that this identity may kms:GenerateDataKey with it',
    );
  } finally {
    kms.destroy();
  }
}

/** The text of a key file, and what it says, checked before KMS is asked anything. */
export function parseKmsKeyFile(text: string, where: string): KmsKeyFile {
  let f: Partial<KmsKeyFile>;
  try {
    f = JSON.parse(text) as Partial<KmsKeyFile>;
  } catch (e) {
    throw new StoreError(`${where} is not a KMS key file (${(e as Error).message}); it is written by \`datagrant init --kms-key ARN\``);
  }
  const k = f.kms;
  if (f.version !== 1 || !k || typeof k.keyId !== 'string' || typeof k.installation !== 'string' || typeof k.ciphertext !== 'string') {
    throw new StoreError(`${where} is not a KMS key file: expected {"version": 1, "kms": {"keyId", "installation", "ciphertext"}}`);
  }
  return f as KmsKeyFile;
}

/**
 * Unwraps the master key. Decrypt names the KMS key the file names, so a blob wrapped by any other
 * key is refused by KMS rather than unwrapped by whichever key made it; the context must match
 * the installation the file names.
 */
export async function unwrapKey(file: KmsKeyFile, where: string, env: NodeJS.ProcessEnv): Promise<MasterKey> {
  const { keyId, installation, ciphertext } = file.kms;
  const kms = client(keyId, env);
  try {
    const r = await kms.send(new DecryptCommand({ KeyId: keyId, CiphertextBlob: Buffer.from(ciphertext, 'base64'), EncryptionContext: context(installation) }));
    if (!r.Plaintext) throw new StoreError(`KMS Decrypt of ${where} returned no key`);
    const plain = Buffer.from(r.Plaintext);
    r.Plaintext.fill(0);
    try {
      return new MasterKey(plain);
    } finally {
      plain.fill(0);
    }
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw kmsError(
      `cannot unwrap the master key in ${where} with KMS key ${keyId}`,
      keyId,
      e,
      'The file was wrapped by another KMS key or for another installation, or was altered, or this identity may not kms:Decrypt with that key',
    );
  } finally {
    kms.destroy();
  }
}
