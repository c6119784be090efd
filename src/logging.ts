// The error log (pino, Fastify's logger) and the access log (one line per request), both on SonicBoom
// destinations so that SIGUSR1 can reopen them after logrotate moved the files.
import pino, { type Logger } from 'pino'
import type { BerthConfig } from './config/schema.js'

type Destination = ReturnType<typeof pino.destination>

function destination (path: string, fd: 1 | 2, minLength = 0): Destination {
  // sonic-boom refuses a minLength that is not below maxWrite (16 KiB by default), the most it hands to
  // one write(2).
  const maxWrite = Math.max(16384, 2 * minLength)
  return pino.destination(path === '-' ? { dest: fd, sync: false, minLength, maxWrite } : { dest: path, sync: false, mkdir: true, minLength, maxWrite })
}

/**
 * The access log gathers lines up to this many bytes (or ACCESS_FLUSH ms) per write, as nginx's
 * `access_log … buffer=64k flush=1s` (here always on): one write per line was the largest single item in a
 * profile of small requests, and with 4 KiB the writes (each handed to libuv's thread pool, which wakes a
 * thread) were still 4 % of the main thread's time on the 401 path (docs/measurements.md).
 */
const ACCESS_BUFFER = 64 * 1024
const ACCESS_FLUSH = 1000

/**
 * Gathers access log lines and hands them to SonicBoom ACCESS_BUFFER bytes at a time. SonicBoom's own
 * `minLength` buffer measures the UTF-8 length of its whole pending string on every write (flattening it
 * first); here a line costs an array push (the length counted is in UTF-16 units, close enough for a
 * threshold). SonicBoom keeps its `minLength` for what flush() hands over short of it, so that
 * flushSync() writes everything there is.
 */
class LineBuffer {
  #lines: string[] = []
  #size = 0
  readonly dest: Destination
  constructor (dest: Destination) { this.dest = dest }

  write (line: string): void {
    this.#lines.push(line)
    this.#size += line.length
    if (this.#size >= ACCESS_BUFFER) this.flush()
  }

  /** Hands what is gathered to the destination: written now if ACCESS_BUFFER long, else kept there. */
  flush (): void {
    if (this.#size === 0) return
    const chunk = this.#lines.join('')
    this.#lines = []
    this.#size = 0
    this.dest.write(chunk)
  }
}

export interface Logs {
  logger: Logger
  access: LineBuffer
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
  const accessDest = destination(config.log.access, 1, ACCESS_BUFFER)
  const access = new LineBuffer(accessDest)
  await Promise.all([errorDest, accessDest].map((d) => new Promise<void>((resolve, reject) => {
    if ((d as unknown as { fd: number }).fd >= 0) { resolve(); return }
    d.once('ready', () => resolve())
    d.once('error', reject)
  })))
  // On a terminal, one readable line per event (pino-pretty, in this process: no worker thread); else
  // JSON, one object per line, for log shippers.
  const pretty = config.log.errorFormat === 'pretty' || (config.log.errorFormat === 'auto' && config.log.error === '-' && process.stderr.isTTY)
  const logger = pino({
    level: config.log.level,
    // Belt and braces: berth never logs request headers, but a plugin might.
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'req.headers.cookie', 'authorization', 'password'], censor: '[redacted]' },
    base: { pid: process.pid }
  }, pretty
    ? (await import('pino-pretty')).default({ destination: errorDest, colorize: config.log.error === '-' && process.stderr.isTTY, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true })
    : errorDest)
  const flush = () => {
    access.flush()
    for (const d of [errorDest, accessDest]) {
      try { d.flushSync() } catch { /* not ready yet, or closed: nothing buffered to lose */ }
    }
  }
  // Lines of a quiet second are written within the next one (an asynchronous flush: nothing blocks).
  const timer = setInterval(() => {
    access.flush()
    if (!(accessDest as unknown as { _writing: boolean })._writing) accessDest.flush()
  }, ACCESS_FLUSH).unref()
  accessDest.once('close', () => clearInterval(timer))
  return {
    logger,
    access,
    format: config.log.format,
    reopen () {
      if (config.log.error !== '-') errorDest.reopen()
      if (config.log.access !== '-') accessDest.reopen()
    },
    flush,
    async settle () {
      // flushSync() leaves alone a chunk whose asynchronous write is under way (sonic-boom's `_writing`),
      // and process.exit() would not wait for it: wait for it first (bounded).
      access.flush()
      const end = Date.now() + 2000
      while ([errorDest, accessDest].some((d) => (d as unknown as { _writing: boolean })._writing) && Date.now() < end) {
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
      flush()
    }
  }
}
