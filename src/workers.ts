// `workers: auto | N` (nginx's worker_processes): a primary process forks N workers with node:cluster,
// which share the listening sockets (the primary hands connections out round robin). The primary serves
// no request: it replaces a worker that dies, passes reload, drain and log reopening to every worker,
// keeps the failed-login counters the workers share when there is no Redis (the same lockouts, in one
// place), and answers the admin listener: /metrics summed over the workers (prom-client's
// AggregatorRegistry), /workers, POST /reload and /stop for all of them, and the rest from one worker.
import cluster, { type Worker } from 'node:cluster'
import http from 'node:http'
import { availableParallelism } from 'node:os'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { AggregatorRegistry } from 'prom-client'
import type { BerthConfig } from './config/schema.js'
import { createLogs } from './logging.js'
import { Throttle } from './auth/throttle.js'

/** What a worker and the primary say to each other. */
export type WorkerMessage =
  | { berth: 'ready', admin: number | null }
  | { berth: 'fail', key: string }
  | { berth: 'block', key: string, until: number }
  | { berth: 'reload', id: number }
  | { berth: 'reloaded', id: number, ok: boolean, message: string }

export function workerCount (workers: number | 'auto'): number {
  return workers === 'auto' ? availableParallelism() : workers
}

/** In a worker: this worker's share of a configuration (its own cache folder and size, a private admin port). */
export function workerConfig (config: BerthConfig, count: number): BerthConfig {
  const id = cluster.worker?.id ?? 0
  return {
    ...config,
    // Workers of one machine never share a cache folder (each keeps its index in memory).
    ...(config.cache !== undefined ? { cache: { ...config.cache, dir: join(config.cache.dir, `worker-${id}`), maxSize: Math.floor(config.cache.maxSize / count) } } : {}),
    // The admin port is the primary's; each worker's own is private, on loopback, for the primary to ask.
    ...(config.admin !== undefined ? { admin: { host: '127.0.0.1', port: 0 } } : {}),
    pidFile: undefined
  } as BerthConfig
}

export async function runPrimary (config: BerthConfig, count: number): Promise<void> {
  const logs = await createLogs(config)
  const log = logs.logger.child({ role: 'primary' })
  const throttle = new Throttle(config.auth?.throttle ?? { failures: 10, userFailures: 50, window: 60_000, block: 300_000 })
  const admins = new Map<number, number>()
  /** Workers that listen (a worker still starting reads the configuration file as it is when it starts). */
  const ready = new Set<number>()
  const reloads = new Map<number, (outcome: { ok: boolean, message: string }) => void>()
  let stopping = false
  let nextId = 1
  const alive = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead())
  const send = (w: Worker, m: WorkerMessage): void => { if (w.isConnected()) w.send(m) }

  const fork = (): void => {
    const started = Date.now()
    // BERTH_TSX says tsx is registered in this process: a worker registers its own (bin/berth.js, or the
    // first TypeScript plugin), so it must not inherit the primary's.
    const w = cluster.fork({ BERTH_WORKERS: String(count), BERTH_TSX: '' })
    w.on('message', (m: WorkerMessage) => {
      if (m.berth === 'ready') { ready.add(w.id); if (m.admin !== null) admins.set(w.id, m.admin) }
      else if (m.berth === 'fail' && throttle.fail(m.key)) {
        const until = Date.now() + throttle.block
        for (const other of alive()) send(other, { berth: 'block', key: m.key, until })
      } else if (m.berth === 'reloaded') reloads.get(m.id)?.(m)
    })
    w.on('exit', (code, signal) => {
      admins.delete(w.id)
      ready.delete(w.id)
      if (stopping) return
      log.error({ worker: w.process.pid, code, signal }, 'worker died; starting another')
      setTimeout(fork, Date.now() - started < 5000 ? 1000 : 0).unref()
    })
  }
  for (let i = 0; i < count; i++) fork()

  const reloadAll = async (): Promise<{ ok: boolean, message: string }> => {
    const outcomes = await Promise.all(alive().filter((w) => ready.has(w.id)).map(async (w) => await new Promise<{ ok: boolean, message: string }>((resolve) => {
      const id = nextId++
      const timer = setTimeout(() => { reloads.delete(id); resolve({ ok: false, message: `worker ${w.process.pid ?? '?'} did not answer` }) }, 30_000)
      reloads.set(id, (o) => { clearTimeout(timer); reloads.delete(id); resolve(o) })
      send(w, { berth: 'reload', id })
    })))
    const ok = outcomes.every((o) => o.ok)
    return { ok, message: `${outcomes.length} workers: ${outcomes[0]?.message ?? 'none running'}${ok ? '' : ' (some refused)'}` }
  }
  const stopAll = (): void => {
    if (stopping) return
    stopping = true
    log.info({ workers: alive().length }, 'draining every worker')
    // A signal, not a message: a worker still starting has no message handler yet and would never hear a
    // message, while SIGTERM ends it at once (or drains it once its handlers are in place).
    for (const w of alive()) w.process.kill('SIGTERM')
    const done = (): void => {
      if (alive().length > 0) return
      void (async () => {
        if (config.pidFile !== undefined) await rm(config.pidFile, { force: true })
        await logs.settle()
        process.exit(0)
      })()
    }
    cluster.on('exit', done)
    done()
  }
  process.on('SIGHUP', () => { void reloadAll().then((o) => log.info(o, 'reload passed to every worker')) })
  process.on('SIGTERM', stopAll)
  process.on('SIGINT', stopAll)
  process.on('SIGUSR1', () => { logs.reopen(); for (const w of alive()) w.process.kill('SIGUSR1') })

  if (config.admin !== undefined) await adminListener(config.admin, alive, admins, reloadAll, stopAll)
  if (config.pidFile !== undefined) {
    await mkdir(dirname(config.pidFile), { recursive: true })
    await writeFile(config.pidFile, `${process.pid}\n`)
  }
  log.info({ workers: count, pid: process.pid }, 'berth primary started its workers')
}

async function adminListener (cfg: NonNullable<BerthConfig['admin']>, alive: () => Worker[], admins: Map<number, number>, reloadAll: () => Promise<{ ok: boolean, message: string }>, stopAll: () => void): Promise<void> {
  const aggregator = new AggregatorRegistry()
  const json = (res: http.ServerResponse, status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)) }
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method === 'GET' && path === '/metrics') {
      aggregator.clusterMetrics().then((text) => res.writeHead(200, { 'content-type': aggregator.contentType }).end(text), (err: Error) => json(res, 500, { error: err.message }))
    } else if (req.method === 'GET' && path === '/workers') {
      json(res, 200, { primary: process.pid, workers: alive().map((w) => ({ id: w.id, pid: w.process.pid, admin: admins.get(w.id) ?? null })) })
    } else if (req.method === 'POST' && path === '/reload') {
      void reloadAll().then((o) => json(res, o.ok ? 200 : 422, o))
    } else if (req.method === 'POST' && path === '/stop') {
      res.once('finish', stopAll)
      json(res, 200, { ok: true, message: `berth (primary pid ${process.pid}, ${alive().length} workers) is draining and will exit` })
    } else {
      // Everything else from one worker's own admin listener (its pool, status and readiness).
      const port = [...admins.values()][0]
      if (port === undefined) { json(res, 503, { status: 'no worker ready' }); return }
      const ask = http.request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      })
      ask.on('error', () => json(res, 502, { status: 'worker did not answer' }))
      req.pipe(ask)
    }
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ host: cfg.host, port: cfg.port, exclusive: true }, resolve))
  server.unref()
}
