// The error log (pino, Fastify's logger) and the access log (one line per request), both on SonicBoom
// destinations so that SIGUSR1 can reopen them after logrotate moved the files.
import pino, { type Logger } from 'pino'
import type { BerthConfig } from './config/schema.js'

type Destination = ReturnType<typeof pino.destination>

function destination (path: string, fd: 1 | 2): Destination {
  return pino.destination(path === '-' ? { dest: fd, sync: false } : { dest: path, sync: false, mkdir: true })
}

export interface Logs {
  logger: Logger
  access: Destination
  format: 'combined' | 'json'
  /** Reopens the files (logrotate's postrotate: kill -USR1). */
  reopen (): void
  flush (): void
}

/** Opens both logs; resolves once the files are open, so a bad path fails at start, not on a request. */
export async function createLogs (config: BerthConfig): Promise<Logs> {
  const errorDest = destination(config.log.error, 2)
  const access = destination(config.log.access, 1)
  await Promise.all([errorDest, access].map((d) => new Promise<void>((resolve, reject) => {
    if ((d as unknown as { fd: number }).fd >= 0) { resolve(); return }
    d.once('ready', () => resolve())
    d.once('error', reject)
  })))
  const logger = pino({
    level: config.log.level,
    // Belt and braces: berth never logs request headers, but a plugin might.
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'req.headers.cookie', 'authorization', 'password'], censor: '[redacted]' },
    base: { pid: process.pid }
  }, errorDest)
  return {
    logger,
    access,
    format: config.log.format,
    reopen () {
      if (config.log.error !== '-') errorDest.reopen()
      if (config.log.access !== '-') access.reopen()
    },
    flush () {
      for (const d of [errorDest, access]) {
        try { d.flushSync() } catch { /* not ready yet, or closed: nothing buffered to lose */ }
      }
    }
  }
}
