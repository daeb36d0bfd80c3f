// What `credentials export` prints for a MariaDB/MySQL password in each format, and which formats
// belong to which kind of credential. Pure: the secret is given.
import { describe, expect, test } from 'vitest';
import { formatSecret } from '../../src/cli/commands/credentials.js';
import { UsageError } from '../../src/core/errors.js';

const MYSQL = { protocol: 'mysql', username: 'alice', password: 'pa"ss\\w0rd', host: 'db.example', port: '3306', database: 'analytics' };

describe('a MariaDB/MySQL password', () => {
  test('env: the mysql client’s variables and the common ones', () => {
    expect(formatSecret('env', 'alice', MYSQL)).toBe(
      'MYSQL_HOST=db.example\nMYSQL_TCP_PORT=3306\nMYSQL_USER=alice\nMYSQL_PWD=pa"ss\\w0rd\nMYSQL_DATABASE=analytics\n',
    );
  });

  test('url: mysql://, the password percent-encoded', () => {
    expect(formatSecret('url', 'alice', MYSQL)).toBe('mysql://alice:pa%22ss%5Cw0rd@db.example:3306/analytics\n');
    expect(formatSecret('url', 'alice', { ...MYSQL, database: '' })).toBe('mysql://alice:pa%22ss%5Cw0rd@db.example:3306\n');
  });

  test('my.cnf: the login under [client], quoted and escaped; the database under [mysql] only', () => {
    expect(formatSecret('my.cnf', 'alice', MYSQL)).toBe(
      '[client]\nhost = "db.example"\nport = 3306\nuser = "alice"\npassword = "pa\\"ss\\\\w0rd"\n\n[mysql]\ndatabase = "analytics"\n',
    );
  });

  test('json is the secret as stored; pgpass and aws-profile are refused, naming what fits', () => {
    expect(JSON.parse(formatSecret('json', 'alice', MYSQL))).toEqual(MYSQL);
    expect(() => formatSecret('pgpass', 'alice', MYSQL)).toThrow(UsageError);
    expect(() => formatSecret('pgpass', 'alice', MYSQL)).toThrow(/use env, url, my.cnf or json/);
    expect(() => formatSecret('aws-profile', 'alice', MYSQL)).toThrow(/use env, url, my.cnf or json/);
  });

  test('my.cnf is not for a PostgreSQL password nor an AWS key', () => {
    expect(() => formatSecret('my.cnf', 'bob', { username: 'bob', password: 'x', host: 'h', port: '5432', database: 'd' })).toThrow(
      /use env, pgpass, url or json/,
    );
    expect(() => formatSecret('my.cnf', 'bob', { accessKeyId: 'AKIA', secretAccessKey: 's' })).toThrow(/for an AWS key use env, aws-profile or json/);
  });
});
