// Where the state lives and where the master key comes from.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { StoreError } from '../core/errors.js';
import { MasterKey } from './crypto.js';
import { parseKmsKeyFile, unwrapKey, type KmsKeyFile } from './kms.js';
import { WrongKeyError } from './meta.js';
import { SqliteStore } from './sqlite.js';
import type { KeyRotationPort, StateStore } from './store.js';

export interface StatePaths {
  dir: string;
  /** Credentials, applied state, journal, lock, audit log. */
  db: string;
  keyFile: string;
  /** The master key wrapped by KMS (`init --kms-key`), instead of keyFile. */
  kmsKeyFile: string;
  /**
   * SCIM identities (`datagrant serve`), in a file of their own: SQLite has one writer per file,
   * and SCIM requests must never wait for a reconcile's writes to the state (nor it for theirs).
   */
  scimDb: string;
}

export function statePaths(dir: string): StatePaths {
  const d = resolve(dir);
  return { dir: d, db: join(d, 'state.db'), keyFile: join(d, 'master.key'), kmsKeyFile: join(d, 'master.key.kms'), scimDb: join(d, 'scim.db') };
}

/** The master key: `DATAGRANT_MASTER_KEY`, else the key file made by `datagrant init`. */
export function loadMasterKey(paths: StatePaths, env: NodeJS.ProcessEnv): MasterKey {
  const fromEnv = env.DATAGRANT_MASTER_KEY;
  if (fromEnv) return MasterKey.parse(fromEnv);
  if (!existsSync(paths.keyFile)) {
    throw new StoreError(`no master key: set DATAGRANT_MASTER_KEY (32 bytes, hex or base64) or run \`datagrant init\` to create ${paths.keyFile}`);
  }
  return readKeyFile(paths.keyFile);
}

/** A key file: only its owner may read it. */
export function readKeyFile(file: string): MasterKey {
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw new StoreError(`${file} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${file}`);
  }
  return MasterKey.parse(readFileSync(file, 'utf8'));
}

/**
 * Writes a key file (0600) whole, or not at all: written beside it, flushed, renamed into place,
 * and the directory flushed, so that a crash never leaves a key the state depends on half written.
 */
export function writeKeyFile(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  rmSync(tmp, { force: true });
  writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  syncPath(tmp);
  renameSync(tmp, file);
  syncPath(dirname(file));
}

/**
 * Removes a plaintext key file for good, as far as a file system allows: its bytes are overwritten
 * in place and flushed before it is unlinked (a copy-on-write file system or an SSD may still keep
 * the old blocks; the key's backups are the operator's). `overwritten` runs in between (kill tests).
 */
export function eraseKeyFile(file: string, overwritten?: () => void): void {
  // O_NOFOLLOW: through a symbolic link the overwrite would reach whatever file it points to
  // (another copy of the key the operator keeps, or anything else) while only the link went away;
  // a second hard link is such a copy too. The operator removes those.
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ELOOP') throw e;
    throw new StoreError(
      `${file} is a symbolic link: datagrant overwrites a key file itself, never through a link, so nothing was overwritten. Remove ${file} and the file it points to yourself.`,
    );
  }
  try {
    const st = fstatSync(fd);
    if (st.nlink > 1) {
      throw new StoreError(
        `${file} has ${st.nlink} hard links: overwriting it would overwrite the other names too, so nothing was overwritten. Remove ${file} and its other links yourself.`,
      );
    }
    writeSync(fd, randomBytes(Math.max(64, st.size)), 0, undefined, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  overwritten?.();
  rmSync(file);
  syncPath(dirname(file));
}

function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Where the master key comes from, first match wins: DATAGRANT_MASTER_KEY; a KMS-wrapped key in
 * DATAGRANT_MASTER_KEY_KMS or master.key.kms; master.key. Both key files at once is ambiguous.
 */
export type KeySource = { kind: 'env' } | { kind: 'file'; file: string } | { kind: 'kms'; file: string | undefined; wrapped: KmsKeyFile };

export function keySource(paths: StatePaths, env: NodeJS.ProcessEnv): KeySource {
  if (env.DATAGRANT_MASTER_KEY) return { kind: 'env' };
  if (env.DATAGRANT_MASTER_KEY_KMS) return { kind: 'kms', file: undefined, wrapped: parseKmsKeyFile(env.DATAGRANT_MASTER_KEY_KMS, 'DATAGRANT_MASTER_KEY_KMS') };
  const [plain, kms] = [existsSync(paths.keyFile), existsSync(paths.kmsKeyFile)];
  if (plain && kms) {
    throw new StoreError(`both ${paths.keyFile} and ${paths.kmsKeyFile} exist: keep the one this state was made with and move the other away`);
  }
  if (kms) return { kind: 'kms', file: paths.kmsKeyFile, wrapped: parseKmsKeyFile(readFileSync(paths.kmsKeyFile, 'utf8'), paths.kmsKeyFile) };
  loadMasterKey(paths, env);
  return { kind: 'file', file: paths.keyFile };
}

/** The master key wherever it comes from (keySource), unwrapped by KMS when it is wrapped. */
export async function masterKeyFor(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<{ key: MasterKey; source: KeySource }> {
  if (!env.DATAGRANT_MASTER_KEY && !env.DATAGRANT_MASTER_KEY_KMS && existsSync(paths.keyFile) && existsSync(paths.kmsKeyFile)) {
    throw await bothKeyFiles(paths, env);
  }
  const source = keySource(paths, env);
  if (source.kind === 'kms') return { key: await unwrapKey(source.wrapped, source.file ?? 'DATAGRANT_MASTER_KEY_KMS', env), source };
  return { key: loadMasterKey(paths, env), source };
}

/**
 * Both key files: which one the state opens with decides what the operator should do. A move into
 * KMS killed after master.key.kms took its place leaves master.key (perhaps overwritten already)
 * beside it, and the state opens under the KMS-wrapped key: `rekey --kms-key` finishes that.
 */
async function bothKeyFiles(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<StoreError> {
  const opens = async (load: () => MasterKey | Promise<MasterKey>): Promise<boolean | undefined> => {
    try {
      await (await openStore(paths, env, { key: await load() })).close();
      return true;
    } catch (e) {
      return e instanceof WrongKeyError ? false : undefined;
    }
  };
  const plain = await opens(() => readKeyFile(paths.keyFile));
  const kms = await opens(() => unwrapKey(parseKmsKeyFile(readFileSync(paths.kmsKeyFile, 'utf8'), paths.kmsKeyFile), paths.kmsKeyFile, env));
  const both = `both ${paths.keyFile} and ${paths.kmsKeyFile} exist`;
  if (kms && !plain) {
    return new StoreError(
      `${both}, and the state opens with ${paths.kmsKeyFile}: a move into KMS (\`datagrant rekey --kms-key\`) was interrupted before it removed ${paths.keyFile}. Run \`datagrant rekey --kms-key <the same KMS key>\` again to finish; nothing was read or changed.`,
    );
  }
  if (plain && !kms) {
    return new StoreError(
      `${both}, and the state opens with ${paths.keyFile}, not with ${paths.kmsKeyFile}: move ${paths.kmsKeyFile} away (keep it until you know what it is); nothing was read or changed.`,
    );
  }
  return new StoreError(`${both}: keep the one this state was made with and move the other away; nothing was read or changed.`);
}

/** Whether any master key is configured (so that init makes none). */
export function keyConfigured(paths: StatePaths, env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.DATAGRANT_MASTER_KEY || env.DATAGRANT_MASTER_KEY_KMS || existsSync(paths.keyFile) || existsSync(paths.kmsKeyFile));
}

/** Create the state directory and a 0600 master key file unless a key is configured. */
export function initState(paths: StatePaths, env: NodeJS.ProcessEnv): { createdKey: boolean } {
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  if (keyConfigured(paths, env)) return { createdKey: false };
  writeFileSync(paths.keyFile, `${MasterKey.generate()}\n`, { mode: 0o600, flag: 'wx' });
  return { createdKey: true };
}

/**
 * The state store: PostgreSQL when `DATAGRANT_STORE_URL` names one (shared by `serve` replicas),
 * else the SQLite file in the state directory.
 */
export async function openStore(paths: StatePaths, env: NodeJS.ProcessEnv, o: OpenOptions = {}): Promise<StateStore & KeyRotationPort> {
  const resolved = o.key ? undefined : await masterKeyFor(paths, env);
  const key = o.key ?? resolved!.key;
  const url = env.DATAGRANT_STORE_URL;
  let store: StateStore & KeyRotationPort;
  try {
    if (url) {
      const { openPgStore } = await import('./postgres.js');
      store = await openPgStore(url, key, { rotating: o.rotating ?? false });
    } else {
      checkDirectory(paths.dir);
      store = new SqliteStore(paths.db, key, { rotating: o.rotating ?? false });
    }
  } catch (e) {
    throw o.key ? e : interruptedRekey(paths, e);
  }
  if (resolved?.source.kind === 'kms') {
    const [mine, its] = [await store.installation(), resolved.source.wrapped.kms.installation];
    if (mine !== its) {
      await store.close();
      throw new StoreError(
        `the KMS-wrapped master key ${resolved.source.file ?? 'in DATAGRANT_MASTER_KEY_KMS'} was made for installation ${its}, but this state is installation ${mine}; nothing was read or changed`,
      );
    }
  }
  return store;
}

/**
 * A rekey killed after the state moved to the new key, before that key became the configured one,
 * leaves its new key file: the configured key is then wrong because a rotation is unfinished, and
 * a rerun of rekey finishes it. Said so, rather than "use the key this state was made with" (which
 * sends the operator looking for an old key, or to delete the only copy of the new one).
 */
function interruptedRekey(paths: StatePaths, e: unknown): unknown {
  if (!(e instanceof WrongKeyError)) return e;
  const left = [`${paths.keyFile}.new`, `${paths.kmsKeyFile}.new`].filter((f) => existsSync(f));
  if (!left.length) return e;
  return new WrongKeyError(
    `wrong master key: the configured master key no longer opens the state, and ${left.join(' and ')} holds the key a \`datagrant rekey\` moved it to: that rekey was interrupted, or the configured key was not switched to the new one yet. Run \`datagrant rekey\` again (with the same options) to finish; it says what is left. Keep ${left.join(' and ')}: the state needs it. Nothing was read or changed.`,
  );
}

export interface OpenOptions {
  /** This key instead of the configured one (`rekey` tries the old and the new). */
  key?: MasterKey;
  /** Open a state whose key rotation is unfinished (`rekey` only). */
  rotating?: boolean;
}

/**
 * The state directory holds the sealed credentials, the SCIM identities and usually the master
 * key: like master.key, it must not be open to other users.
 */
function checkDirectory(dir: string): void {
  if (!existsSync(dir)) return;
  const mode = statSync(dir).mode & 0o777;
  if (mode & 0o077) {
    throw new StoreError(`the state directory ${dir} is open to other users (mode ${mode.toString(8)}); run: chmod 700 ${dir}`);
  }
}
