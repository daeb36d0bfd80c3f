// rekey: move the state to a new master key. Crash-safe at every step, and a rerun finishes:
// 1. the new key is written to its own file (master.key.new, or --new-key-file) before the state
//    depends on it;
// 2. the state records the rotation (from then on only rekey opens it), seals each credential
//    under the new key in a transaction of its own, then in one transaction appends the
//    `key.rotated` audit entry and switches its key check;
// 3. master.key.new is renamed over master.key (atomic). With DATAGRANT_MASTER_KEY the operator
//    changes the variable instead, as told.
// A rerun finds where a crash stopped from which key the state accepts: the old one (with or
// without a rotation begun) or already the new one.
import { existsSync, renameSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { StoreError } from '../../core/errors.js';
import { MasterKey } from '../../store/crypto.js';
import { WrongKeyError } from '../../store/meta.js';
import { loadMasterKey, openStore, readKeyFile, writeKeyFile } from '../../store/open.js';
import { rotationElsewhere } from '../../store/rotation.js';
import { actorOf, pathsFor, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

export interface RekeyOptions extends CommonOptions {
  newKeyFile?: string;
  lockTimeoutMs: number;
}

/**
 * For the kill tests only: DATAGRANT_TEST_CRASH_AT names a step after which the process kills
 * itself (SIGKILL: no handler, no cleanup, as a power cut would).
 */
function crashPoint(io: Io, step: string): void {
  if (io.env.DATAGRANT_TEST_CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}

export async function rekeyCommand(io: Io, opts: RekeyOptions): Promise<number> {
  const paths = pathsFor(io, opts);
  const keyFromEnv = Boolean(io.env.DATAGRANT_MASTER_KEY);
  const defaultNewFile = `${paths.keyFile}.new`;
  const newFile = opts.newKeyFile ? resolve(io.cwd, opts.newKeyFile) : defaultNewFile;
  const current = loadMasterKey(paths, io.env);
  let next = existsSync(newFile) ? readKeyFile(newFile) : undefined;

  if (next && next.keyCheck() === current.keyCheck()) {
    if (keyFromEnv) {
      io.stdout(`DATAGRANT_MASTER_KEY already is the key in ${newFile}, and the state is under it: delete ${newFile}.\n`);
      return 0;
    }
    return keyFilesDone(io, { keyFromEnv, newFile, defaultNewFile, keyFile: paths.keyFile });
  }

  let store;
  try {
    store = await openStore(paths, io.env, { key: current, rotating: true });
  } catch (e) {
    if (!(e instanceof WrongKeyError) || !next) throw e;
    // The state already moved to the new key: only the key files are left to do.
    await (await openStore(paths, io.env, { key: next })).close();
    return keyFilesDone(io, { keyFromEnv, newFile, defaultNewFile, keyFile: paths.keyFile });
  }
  let moved = 0;
  try {
    const target = await store.rotationTarget();
    if (target !== undefined && next?.keyCheck() !== target) throw rotationElsewhere(target);
    if (!next) {
      const text = `${MasterKey.generate()}\n`;
      writeKeyFile(newFile, text);
      next = MasterKey.parse(text);
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
  return keyFilesDone(io, { keyFromEnv, newFile, defaultNewFile, keyFile: paths.keyFile });
}

/** The state is under the new key: make it the configured key, or tell the operator how. */
function keyFilesDone(io: Io, f: { keyFromEnv: boolean; newFile: string; defaultNewFile: string; keyFile: string }): number {
  if (f.keyFromEnv) {
    io.stdout(
      `The state is now under the key in ${f.newFile}. Set DATAGRANT_MASTER_KEY to that key wherever datagrant runs (then delete ${f.newFile}); the old key no longer opens the state.\n` +
        'Backups taken before now still need the old key; plans saved before now are refused.\n',
    );
    return 0;
  }
  if (!existsSync(f.newFile)) throw new StoreError(`the new key file ${f.newFile} is gone; the state needs it`);
  if (f.newFile === f.defaultNewFile) renameSync(f.newFile, f.keyFile);
  else writeKeyFile(f.keyFile, readFileSync(f.newFile, 'utf8'));
  io.stdout(
    `${f.keyFile} now holds the new master key${f.newFile === f.defaultNewFile ? '' : ` (a copy of ${f.newFile})`}: back it up somewhere safe. The old key no longer opens the state.\n` +
      'Backups taken before now still need the old key; plans saved before now are refused.\n',
  );
  return 0;
}
