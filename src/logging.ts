// The error log (pino, Fastify's logger) and the access log (one line per request), both on SonicBoom
// destinations so that SIGUSR1 can reopen them after logrotate moved the files.
import pino, { type Logger } from 'pino'
import type { BerthConfig } from './config/schema.js'

type Destination = ReturnType<typeof pino.destination>

function destination (path: string, fd: 1 | 2, minLength = 0): Destination {
  return pino.destination(path === '-' ? { dest: fd, sync: false, minLength } : { dest: path, sync: false, mkdir: true, minLength })
}

/**
 * The access log gathers lines up to this many bytes (or ACCESS_FLUSH ms) per write: one write per line
 * cost berth ~70 us of main-thread time per request under load, the largest single item in a profile of
 * small requests (nginx's `access_log … buffer=4k flush=1s`, here always on).
 */
const ACCESS_BUFFER = 4096
const ACCESS_FLUSH = 1000

export interface Logs {
  logger: Logger
  access: Destination
  format: 'combined' | 'json'
  /** Reopens the files (logrotate's postrotate: kill -USR1). */
  reopen (): void
  flush (): void
  /** Waits for writes in flight, then flushes: nothing written before is lost when the process exits. */
  settle (): Promise<void>
}

/** Opens both logs; resolves once the files are open, so a bad path fails at start, not on a request. */
export async function createLogs (config: BerthConfig): Promise<Logs> {
  const errorDest = destination(config.log.error, 2)
  const access = destination(config.log.access, 1, ACCESS_BUFFER)
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
  const flush = () => {
    for (const d of [errorDest, access]) {
      try { d.flushSync() } catch { /* not ready yet, or closed: nothing buffered to lose */ }
    }
  }
  // Lines of a quiet second are written within the next one (an asynchronous flush: nothing blocks).
  const timer = setInterval(() => {
    if (!(access as unknown as { _writing: boolean })._writing) access.flush()
  }, ACCESS_FLUSH).unref()
  access.once('close', () => clearInterval(timer))
  return {
    logger,
    access,
    format: config.log.format,
    reopen () {
      if (config.log.error !== '-') errorDest.reopen()
      if (config.log.access !== '-') access.reopen()
    },
    flush,
    async settle () {
      // flushSync() leaves alone a chunk whose asynchronous write is under way (sonic-boom's `_writing`),
      // and process.exit() would not wait for it: wait for it first (bounded).
      const end = Date.now() + 2000
      while ([errorDest, access].some((d) => (d as unknown as { _writing: boolean })._writing) && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      flush()
    }
  }
}
