// The logins of `datagrant login`: per user, per serve URL, the ID token (and refresh token) the
// person's IdP issued. A refresh token is as good as a password for as long as it lives, so the
// file is kept as ssh keeps a private key: 0600 in a 0700 directory, and a file or directory that
// other users could read or swap is refused, not used.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { LoginError } from './errors.js';

export interface StoredLogin {
  /** The serve URL the login is for (the file's key). */
  server: string;
  issuer: string;
  clientId: string;
  idToken: string;
  refreshToken?: string;
  /** When the ID token expires (its `exp`), ISO 8601. */
  expiresAt: string;
  /** Who signed in, for messages: the token's email, else its subject. */
  who: string;
  loggedInAt: string;
}

interface LoginFile {
  version: 1;
  logins: Record<string, Omit<StoredLogin, 'server'>>;
}

/**
 * `$XDG_CONFIG_HOME/datagrant/sessions.json`, else `~/.config/datagrant/sessions.json`
 * (XDG Base Directory: a relative XDG_CONFIG_HOME is to be ignored).
 */
export function loginFilePath(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME && isAbsolute(env.HOME) ? env.HOME : homedir(), '.config');
  return join(base, 'datagrant', 'sessions.json');
}

/** How long a process waits for another one's update of the file (a refresh takes one request). */
const LOCK_WAIT_MS = 15_000;
/** A lock older than this was left by a process that died while holding it. */
const STALE_LOCK_MS = 60_000;

export class LoginStore {
  constructor(readonly path: string) {}

  /** The login for `server`, or undefined; refuses a file or directory others could read or swap. */
  get(server: string): StoredLogin | undefined {
    const file = this.#read();
    const login = file?.logins[server];
    return login ? { ...login, server } : undefined;
  }

  /**
   * Read, change and write the file with no other datagrant process doing the same meanwhile:
   * refresh tokens may be single-use (rotated), so two processes refreshing one login at once
   * would leave one of them, or both, logged out. `fn` sees the login as it is now (another
   * process may just have refreshed it) and returns what to store (or undefined: no change).
   */
  async update(server: string, fn: (current: StoredLogin | undefined) => Promise<StoredLogin | undefined>): Promise<StoredLogin | undefined> {
    this.#ensureDirectory();
    const release = await this.#lock();
    try {
      const file = this.#read() ?? { version: 1, logins: {} };
      const current = file.logins[server];
      const next = await fn(current ? { ...current, server } : undefined);
      if (!next) return current ? { ...current, server } : undefined;
      const { server: _key, ...stored } = next;
      this.#write({ ...file, logins: { ...file.logins, [server]: stored } });
      return next;
    } finally {
      release();
    }
  }

  #read(): LoginFile | undefined {
    let st: Stats;
    try {
      st = lstatSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new LoginError(`cannot read ${this.path}: ${(e as Error).message}`);
    }
    checkPrivate(this.path, st, 'file');
    checkPrivate(dirname(this.path), lstatSync(dirname(this.path)), 'directory');
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.path, 'utf8'));
    } catch (e) {
      throw new LoginError(`${this.path} is not a datagrant login file (${(e as Error).message}); delete it and run \`datagrant login\` again`);
    }
    if (!isLoginFile(parsed)) throw new LoginError(`${this.path} is not a datagrant login file; delete it and run \`datagrant login\` again`);
    return parsed;
  }

  #write(file: LoginFile): void {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    // Written whole and renamed over the old file: a reader never sees half a file, and a crash
    // leaves the old logins in place.
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(file, null, 2)}\n`);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      unlinkSync(tmp);
      throw e;
    }
    closeSync(fd);
    renameSync(tmp, this.path);
  }

  #ensureDirectory(): void {
    const dir = dirname(this.path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    checkPrivate(dir, lstatSync(dir), 'directory');
  }

  async #lock(): Promise<() => void> {
    const lock = `${this.path}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        closeSync(openSync(lock, 'wx', 0o600));
        return () => {
          try {
            unlinkSync(lock);
          } catch {
            // Already taken away as stale by another process: nothing left to release.
          }
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new LoginError(`cannot lock ${this.path}: ${(e as Error).message}`);
      }
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) unlinkSync(lock);
      } catch {
        // Released meanwhile: try again at once.
      }
      if (Date.now() > deadline) {
        throw new LoginError(`${lock} has been held by another datagrant process for over ${LOCK_WAIT_MS / 1000} s; if none is running, delete it`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/**
 * As ssh does for a private key: refused when other users could read it (a file) or replace what
 * is in it (a directory writable by them), or when it belongs to another user.
 */
function checkPrivate(path: string, st: Stats, what: 'file' | 'directory'): void {
  const mode = st.mode & 0o777;
  if (what === 'file' && !st.isFile()) {
    throw new LoginError(`${path} is not a regular file (a symbolic link?); it must be a 0600 file of yours: delete it and run \`datagrant login\` again`);
  }
  if (what === 'directory' && !st.isDirectory()) throw new LoginError(`${path} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new LoginError(`${path} belongs to another user (uid ${st.uid}); it must be yours: delete it and run \`datagrant login\` again`);
  }
  if (what === 'file' && mode & 0o077) {
    throw new LoginError(
      `${path} is open to other users (mode ${mode.toString(8).padStart(4, '0')}) and holds your login tokens: refused. Run \`chmod 600 ${path}\`, or delete it and run \`datagrant login\` again (if others could read it, log out at your identity provider too)`,
    );
  }
  if (what === 'directory' && mode & 0o022) {
    throw new LoginError(
      `${path} is writable by other users (mode ${mode.toString(8).padStart(4, '0')}), who could replace your login file: refused. Run \`chmod 700 ${path}\``,
    );
  }
}

function isLoginFile(v: unknown): v is LoginFile {
  if (typeof v !== 'object' || v === null) return false;
  const f = v as Partial<LoginFile>;
  if (f.version !== 1 || typeof f.logins !== 'object' || f.logins === null) return false;
  return Object.values(f.logins).every(
    (l) =>
      typeof l === 'object' &&
      l !== null &&
      typeof l.issuer === 'string' &&
      typeof l.clientId === 'string' &&
      typeof l.idToken === 'string' &&
      typeof l.expiresAt === 'string' &&
      (l.refreshToken === undefined || typeof l.refreshToken === 'string'),
  );
}
