// A TCP server on a free loopback port that accepts every connection and never answers: what a
// wrong port, a hung server or a half-dead load balancer looks like to a client. `forwardTo` turns
// it into a plain relay to a real server, for the run after the outage.
import { connect, createServer, type Socket } from 'node:net';

export interface BlackHole {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** From now on, relay new connections to this port on 127.0.0.1. */
  forwardTo(port: number): void;
  close(): Promise<void>;
}

export async function startBlackHole(): Promise<BlackHole> {
  const sockets = new Set<Socket>();
  let target: number | undefined;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  };
  const server = createServer((client) => {
    hole.accepted++;
    track(client);
    if (target === undefined) return; // read nothing, answer nothing
    const upstream = connect(target, '127.0.0.1');
    track(upstream);
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const hole: BlackHole = {
    port: (server.address() as { port: number }).port,
    accepted: 0,
    forwardTo(port) {
      target = port;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return hole;
}
