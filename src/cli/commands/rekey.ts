// rekey: move the state to a new master key. Crash-safe at every step, and a rerun finishes:
// 1. the new key is written to its own file (master.key.new, or --new-key-file) before the state
//    depends on it;
// 2. the state records the rotation (from then on only rekey opens it), seals each credential
//    under the new key in a transaction of its own, then in one transaction appends the
//    `key.rotated` audit entry and switches its key check;
// 3. master.key.new is renamed over master.key (atomic). With DATAGRANT_MASTER_KEY the operator
//    changes the variable instead, as told. A KMS-wrapped key is replaced by a new data key from
//    KMS the same way (master.key.kms.new, then master.key.kms; or DATAGRANT_MASTER_KEY_KMS).
//    A plain key moves into KMS (`--kms-key ARN`) the same way too: master.key.kms.new, renamed
//    to master.key.kms once the state is under it, and only then is master.key overwritten and
//    removed (a kill in between leaves both files, and a rerun finishes from there).
// A rerun finds where a crash stopped from which key the state accepts: the old one (with or
// without a rotation begun) or already the new one.
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StoreError, UsageError } from '../../core/errors.js';
import { MasterKey } from '../../store/crypto.js';
import { generateWrappedKey, parseKmsKeyFile, unwrapKey } from '../../store/kms.js';
import { WrongKeyError } from '../../store/meta.js';
import { eraseKeyFile, masterKeyFor, openStore, readKeyFile, writeKeyFile, type StatePaths } from '../../store/open.js';
import { rotationElsewhere } from '../../store/rotation.js';
import { actorOf, pathsFor, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

export interface RekeyOptions extends CommonOptions {
  newKeyFile?: string;
  /** With a KMS-wrapped key: wrap the new one with this KMS key instead of the current one's. */
  kmsKey?: string;
  lockTimeoutMs: number;
}

/**
 * For the kill tests only: DATAGRANT_TEST_CRASH_AT names a step after which the process kills
 * itself (SIGKILL: no handler, no cleanup, as a power cut would).
 */
function crashPoint(io: Io, step: string): void {
  if (io.env.DATAGRANT_TEST_CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}

/** The two keys of a rotation: where the current one comes from, and where the new one is kept. */
interface Keys {
  current: MasterKey;
  /** The configured key is a variable's (DATAGRANT_MASTER_KEY or DATAGRANT_MASTER_KEY_KMS), not a file's. */
  fromEnv: boolean;
  /** Where rekey makes the new key when given none. */
  defaultNewFile: string;
  /** Where the new key is kept until it is the configured one. */
  newFile: string;
  readNext(): Promise<MasterKey | undefined>;
  /** Makes the new key and writes newFile (whole, 0600) before the state depends on it. */
  makeNext(installation: string): Promise<MasterKey>;
  /** The state is under the new key: make it the configured one, or say how. */
  finish(crash: (step: string) => void): string;
}

async function keysFor(io: Io, paths: StatePaths, opts: RekeyOptions): Promise<Keys> {
  const { key: current, source } = await masterKeyFor(paths, io.env);
  const after = 'Backups taken before now still need the old key; plans saved before now are refused.\n';
  if (source.kind === 'kms') {
    if (opts.newKeyFile) throw new UsageError('--new-key-file is for a plaintext master key; a KMS-wrapped key is replaced by a new data key from KMS');
    const newFile = source.file ? `${source.file}.new` : join(paths.dir, 'master.key.kms.new');
    return {
      current,
      fromEnv: !source.file,
      defaultNewFile: newFile,
      newFile,
      readNext: async () => (existsSync(newFile) ? unwrapKey(parseKmsKeyFile(readFileSync(newFile, 'utf8'), newFile), newFile, io.env) : undefined),
      makeNext: async (installation) => {
        const { key, file } = await generateWrappedKey(opts.kmsKey ?? source.wrapped.kms.keyId, installation, io.env);
        writeKeyFile(newFile, `${JSON.stringify(file, null, 2)}\n`);
        return key;
      },
      finish: () => {
        if (!source.file) {
          return `The state is now under the KMS-wrapped key in ${newFile}. Set DATAGRANT_MASTER_KEY_KMS to that file's content wherever datagrant runs (then delete it); the old key no longer opens the state.\n${after}`;
        }
        renameSync(newFile, source.file);
        return `${source.file} now holds the new master key, wrapped by KMS; the old data key no longer opens the state.\n${after}`;
      },
    };
  }
  const kmsNewFile = `${paths.kmsKeyFile}.new`;
  // A move into KMS that a kill interrupted goes on with the file it left, --kms-key or not.
  if (opts.kmsKey || existsSync(kmsNewFile)) {
    if (opts.newKeyFile) throw new UsageError('--new-key-file is for a plaintext master key; --kms-key makes the new one a data key from KMS');
    return {
      current,
      fromEnv: source.kind === 'env',
      defaultNewFile: kmsNewFile,
      newFile: kmsNewFile,
      readNext: async () => (existsSync(kmsNewFile) ? unwrapKey(parseKmsKeyFile(readFileSync(kmsNewFile, 'utf8'), kmsNewFile), kmsNewFile, io.env) : undefined),
      makeNext: async (installation) => {
        const { key, file } = await generateWrappedKey(opts.kmsKey!, installation, io.env);
        writeKeyFile(kmsNewFile, `${JSON.stringify(file, null, 2)}\n`);
        return key;
      },
      finish: (crash) => {
        if (source.kind === 'env') {
          return `The state is now under the KMS-wrapped key in ${kmsNewFile}. Set DATAGRANT_MASTER_KEY_KMS to that file's content wherever datagrant runs, remove DATAGRANT_MASTER_KEY there and from wherever it is kept (then delete ${kmsNewFile}); the old key no longer opens the state.\n${after}`;
        }
        renameSync(kmsNewFile, paths.kmsKeyFile);
        crash('renamed');
        return intoKms(paths, crash, after);
      },
    };
  }
  const defaultNewFile = `${paths.keyFile}.new`;
  const newFile = opts.newKeyFile ? resolve(io.cwd, opts.newKeyFile) : defaultNewFile;
  return {
    current,
    fromEnv: source.kind === 'env',
    defaultNewFile,
    newFile,
    readNext: async () => (existsSync(newFile) ? readKeyFile(newFile) : undefined),
    makeNext: async () => {
      const text = `${MasterKey.generate()}\n`;
      writeKeyFile(newFile, text);
      return MasterKey.parse(text);
    },
    finish: () => {
      if (source.kind === 'env') {
        return `The state is now under the key in ${newFile}. Set DATAGRANT_MASTER_KEY to that key wherever datagrant runs (then delete ${newFile}); the old key no longer opens the state.\n${after}`;
      }
      if (!existsSync(newFile)) throw new StoreError(`the new key file ${newFile} is gone; the state needs it`);
      if (newFile === defaultNewFile) renameSync(newFile, paths.keyFile);
      else writeKeyFile(paths.keyFile, readFileSync(newFile, 'utf8'));
      return `${paths.keyFile} now holds the new master key${newFile === defaultNewFile ? '' : ` (a copy of ${newFile})`}: back it up somewhere safe. The old key no longer opens the state.\n${after}`;
    },
  };
}

/** After a move into KMS: the plaintext key file goes, once master.key.kms is the state's key. */
function intoKms(paths: StatePaths, crash: (step: string) => void, after: string): string {
  eraseKeyFile(paths.keyFile, () => crash('overwritten'));
  return (
    `${paths.kmsKeyFile} now holds the new master key, wrapped by KMS; ${paths.keyFile} was overwritten and removed, and no plaintext key is left in ${paths.dir}. ` +
    `The old key no longer opens the state.\n${after}`
  );
}

/**
 * A move into KMS killed after master.key.kms took its place but before master.key was removed
 * leaves both files (every other command refuses that as ambiguous): when the state opens under
 * the KMS-wrapped key, the rerun removes the plaintext one. Undefined when that is not the case.
 */
async function finishMoveIntoKms(io: Io, paths: StatePaths, opts: RekeyOptions): Promise<string | undefined> {
  const env = io.env;
  if (!opts.kmsKey || env.DATAGRANT_MASTER_KEY || env.DATAGRANT_MASTER_KEY_KMS || !existsSync(paths.keyFile) || !existsSync(paths.kmsKeyFile)) return undefined;
  const key = await unwrapKey(parseKmsKeyFile(readFileSync(paths.kmsKeyFile, 'utf8'), paths.kmsKeyFile), paths.kmsKeyFile, env);
  try {
    await (await openStore(paths, env, { key })).close();
  } catch (e) {
    if (e instanceof WrongKeyError) return undefined;
    throw e;
  }
  return intoKms(paths, (step) => crashPoint(io, step), 'Backups taken before the move still need the old key; plans saved before it are refused.\n');
}

export async function rekeyCommand(io: Io, opts: RekeyOptions): Promise<number> {
  const paths = pathsFor(io, opts);
  const finished = await finishMoveIntoKms(io, paths, opts);
  if (finished) {
    io.stdout(finished);
    return 0;
  }
  const keys = await keysFor(io, paths, opts);
  let next = await keys.readNext();

  if (next && next.keyCheck() === keys.current.keyCheck()) {
    // The configured key already is the new one: the operator switched the variable as told, and
    // the file is a copy of it. Where the key comes from a file, that file may be the one given
    // (--new-key-file master.key) or a copy the operator made: a rotation to it changes nothing,
    // and no file is called spare, since it may be the only copy of the live key.
    if (keys.fromEnv) {
      io.stdout(`The configured master key already is the one in ${keys.newFile}, and the state is under it: delete ${keys.newFile}.\n`);
      return 0;
    }
    throw new UsageError(
      `${keys.newFile} holds the current master key: a rotation to it would change nothing, so nothing was done. To rotate, give a file with another key in --new-key-file, or none (rekey then makes a new key in ${keys.defaultNewFile}).`,
    );
  }

  let store;
  try {
    store = await openStore(paths, io.env, { key: keys.current, rotating: true });
  } catch (e) {
    if (!(e instanceof WrongKeyError) || !next) throw e;
    // The state already moved to the new key: only the key files are left to do.
    await (await openStore(paths, io.env, { key: next })).close();
    io.stdout(keys.finish((step) => crashPoint(io, step)));
    return 0;
  }
  let moved = 0;
  try {
    const target = await store.rotationTarget();
    if (target !== undefined && next?.keyCheck() !== target) throw rotationElsewhere(target);
    if (!next) {
      next = await keys.makeNext(await store.installation());
      crashPoint(io, 'key-written');
    }
    await store.acquireLock('datagrant rekey', opts.lockTimeoutMs);
    try {
      await store.beginRotation(next);
      crashPoint(io, 'begun');
      const n = await store.resealAll(next, () => crashPoint(io, `resealed:${++moved}`));
      crashPoint(io, 'resealed');
      await store.finishRotation(next, actorOf(io), io.now().toISOString());
      crashPoint(io, 'switched');
      moved = n;
    } finally {
      await store.releaseLock();
    }
  } finally {
    await store.close();
  }
  io.stdout(`Sealed ${moved} credential${moved === 1 ? '' : 's'} under the new master key; the audit chain records the change.\n`);
  io.stdout(keys.finish((step) => crashPoint(io, step)));
  return 0;
}
