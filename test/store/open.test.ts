// Where the state lives and where the master key comes from (src/store/open.ts).
import { chmodSync, existsSync, linkSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { eraseKeyFile, initState, loadMasterKey, openStore, statePaths } from '../../src/store/open.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dg-open-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('master key', () => {
  test('init creates a 0600 key file once; a group-readable key file is refused', () => {
    const paths = statePaths(join(dir, 'st'));
    expect(initState(paths, {}).createdKey).toBe(true);
    expect(initState(paths, {}).createdKey).toBe(false);
    expect(statSync(paths.keyFile).mode & 0o777).toBe(0o600);
    expect(() => loadMasterKey(paths, {})).not.toThrow();
    chmodSync(paths.keyFile, 0o640);
    expect(() => loadMasterKey(paths, {})).toThrow(/readable by other users/);
  });

  test('a state directory open to other users is refused, naming the fix', async () => {
    const paths = statePaths(join(dir, 'open'));
    initState(paths, {});
    await (await openStore(paths, {})).close();
    chmodSync(paths.dir, 0o755);
    await expect(openStore(paths, {})).rejects.toThrow(`the state directory ${paths.dir} is open to other users (mode 755); run: chmod 700 ${paths.dir}`);
  });

  test('no key configured is a clear error', () => {
    expect(() => loadMasterKey(statePaths(join(dir, 'none')), {})).toThrow(/DATAGRANT_MASTER_KEY .*datagrant init/);
  });
});

describe('eraseKeyFile', () => {
  test('overwrites and removes the key file itself', () => {
    const file = join(dir, 'master.key');
    writeFileSync(file, 'the-key\n', { mode: 0o600 });
    let seen = '';
    eraseKeyFile(file, () => void (seen = readFileSync(file, 'latin1')));
    expect(seen).not.toContain('the-key');
    expect(existsSync(file)).toBe(false);
  });

  test('never through a symbolic link: neither the link nor what it points to is touched', () => {
    const target = join(dir, 'backup.key');
    const link = join(dir, 'master.key');
    writeFileSync(target, 'the-key\n', { mode: 0o600 });
    symlinkSync(target, link);
    expect(() => eraseKeyFile(link)).toThrow(
      `${link} is a symbolic link: datagrant overwrites a key file itself, never through a link, so nothing was overwritten`,
    );
    expect(readFileSync(target, 'utf8')).toBe('the-key\n');
    expect(readFileSync(link, 'utf8')).toBe('the-key\n');
  });

  test('a key file with another hard link (a copy under another name) is left whole', () => {
    const file = join(dir, 'master.key');
    writeFileSync(file, 'the-key\n', { mode: 0o600 });
    linkSync(file, join(dir, 'kept.key'));
    expect(() => eraseKeyFile(file)).toThrow(/has 2 hard links: .*nothing was overwritten/);
    expect(readFileSync(join(dir, 'kept.key'), 'utf8')).toBe('the-key\n');
  });
});
