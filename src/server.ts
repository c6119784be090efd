// Running berth: load, listen, and the signals an nginx operator expects (USR1 reopens logs,
// TERM/INT close gracefully).
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { hostname } from 'node:os'
import type { FastifyInstance } from 'fastify'
import { loadConfig, configWarnings } from './config/load.js'
import type { BerthConfig } from './config/schema.js'
import type { ConfigError } from './errors.js'
import cluster from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import { runPrimary, workerConfig, workerCount, type WorkerMessage } from './workers.js'
import { tuneCollector } from './memory.js'
import { endLeanStart } from './lean-start.js'

export interface StartOptions {
  /** Create a development CA and certificate when the configured ones are missing (the Docker image). */
  initCerts?: boolean
  /** `npm start`: initCerts, and a development registry when none answers at the configured one. */
  dev?: boolean
  /** Where to say what happened before the logger exists. */
  say?: (line: string) => void
}

/** `npm start` on a fresh clone: make the certificates the config names, and say so. */
async function ensureDevCerts (configFile: string, say: (line: string) => void): Promise<void> {
  const config = await loadConfig(configFile, { skipFiles: true })
  if (!config.tls || config.tls.cert === undefined || config.tls.key === undefined || (existsSync(config.tls.cert) && existsSync(config.tls.key))) return
  const dir = dirname(config.tls.cert)
  if (dirname(config.tls.key) !== dir || basename(config.tls.cert) !== 'server.crt' || basename(config.tls.key) !== 'server.key') {
    throw new Error(`${config.file}: tls.cert / tls.key are missing; --init-certs only creates DIR/server.crt and DIR/server.key: make them with berth certs --host NAME --out DIR`)
  }
  const { makeCerts, trustInstructions } = await import('./certs.js') // @peculiar/x509: only to make certificates
  const names = ['localhost', hostname()].filter((n, i, a) => a.indexOf(n) === i && /^[A-Za-z0-9.-]+$/.test(n))
  const { files } = await makeCerts({ hosts: names, ips: ['127.0.0.1', '::1'], out: dir })
  say(`berth: ${config.tls.cert} was missing: created a development CA and certificate for ${names.join(', ')}, 127.0.0.1, ::1`)
  say(trustInstructions(files, names, config.listen.port))
}

/** Start-up failures an operator can fix, said with the key and the file (address in use, no permission). */
function listenProblem (err: NodeJS.ErrnoException & { port?: number, address?: string }, config: BerthConfig): Error {
  if (err.code !== 'EADDRINUSE' && err.code !== 'EACCES') return err
  const admin = config.admin !== undefined && err.port === config.admin.port && err.port !== config.listen.port
  const key = admin ? 'admin.port' : 'listen.port'
  const where = `${err.address ?? (admin ? config.admin?.host : config.listen.host)}:${err.port ?? config.listen.port}`
  return new Error(err.code === 'EADDRINUSE'
    ? `${config.file}: ${key}: ${where} is already in use (another berth, nginx or registry?); stop it or choose another port`
    : `${config.file}: ${key}: not allowed to listen on ${where} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`)
}

/** A warning per upstream that does not accept a connection now (berth starts anyway, and answers 502). */
async function unreachable (config: BerthConfig): Promise<string[]> {
  const { tcpProbe } = await import('./upstream/probe.js')
  return (await Promise.all(config.upstream.servers.map(async (s) => {
    const url = new URL(s.url)
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
    const why = await tcpProbe(url.hostname.replace(/^\[|\]$/g, ''), port, 1000)
      .then(() => null, (err: NodeJS.ErrnoException) => err.code ?? err.message)
    return why === null ? null : `upstream ${s.url} does not answer (${why}): berth answers 502 until a server does`
  }))).filter((w): w is string => w !== null)
}

export interface ReloadOutcome { ok: boolean, message: string }

/** Null in the primary process of `workers` (it serves nothing itself: src/workers.ts). */
export async function startServer (configFile: string, opts: StartOptions = {}): Promise<FastifyInstance | null> {
  const say = opts.say ?? ((line: string) => process.stderr.write(line + '\n'))
  const worker = cluster.isWorker
  if (!worker && (opts.initCerts === true || opts.dev === true)) await ensureDevCerts(configFile, say)
  const loaded: BerthConfig = await loadConfig(configFile)
  const count = workerCount(loaded.workers)
  if (count > 1 && cluster.isPrimary) {
    await runPrimary(loaded, count)
    endLeanStart()
    return null
  }
  // Before anything here can open a connection through undici: it compiles its parser at the first one,
  // and V8 reads the flags that keep it on the baseline compiler then (src/memory.ts).
  tuneCollector()
  // A worker's share: its own cache folder, a private admin port (the primary answers the configured one).
  const share = (c: BerthConfig): BerthConfig => worker ? workerConfig(c, count) : c
  const config = share(loaded)
  // Loaded here, not at the top: the primary of `workers` serves nothing and stays small without them.
  const [{ buildApp }, { createLogs }, { ensureDevRegistry }] = await Promise.all([
    import('./app.js'), import('./logging.js'), import('./dev-registry.js')])
  const registry = opts.dev === true && !worker ? await ensureDevRegistry(config, say) : null
  const logs = await createLogs(config)
  const app = await buildApp(config, { logs })
  const onUsr1 = () => {
    logs.reopen()
    app.log.info('log files reopened')
  }
  // SIGHUP (or berth reload): re-read the config and every file it names; apply it whole, or keep the
  // running one. Reloads run one at a time.
  let reloading: Promise<ReloadOutcome> = Promise.resolve({ ok: true, message: '' })
  const reload = (): Promise<ReloadOutcome> => {
    reloading = reloading.then(async () => {
      try {
        let next: BerthConfig
        try {
          next = share(await loadConfig(configFile))
        } catch (err) {
          app.reloads.failed++ // refused before app.reload, which counts its own refusals
          throw err
        }
        const notes = await app.reload(next)
        for (const w of configWarnings(next)) app.log.warn(w)
        const message = notes.length > 0 ? 'configuration reloaded; some changes need a restart' : 'configuration reloaded'
        app.log.info({ file: next.file, needsRestart: notes }, message)
        return { ok: true, message: [`${message} (${next.file})`, ...notes.map((n) => `  ${n}`)].join('\n') }
      } catch (err) {
        const problems = (err as ConfigError).problems ?? [(err as Error).message]
        app.log.error({ file: configFile, problems }, 'reload refused: the running configuration stays in force')
        return { ok: false, message: [`reload refused: the running configuration stays in force. ${configFile}:`, ...problems.map((p) => `  ${p}`)].join('\n') }
      }
    })
    return reloading
  }
  const onHup = () => { void reload() }
  // SIGTERM/SIGINT (or berth stop): stop accepting, let requests in flight finish (up to drainTimeout),
  // answer new requests on open connections with 503 + Connection: close, then exit 0.
  let closing = false
  const onStop = (signal: NodeJS.Signals | 'berth stop') => {
    if (closing) return
    closing = true
    const drainTimeout = app.berthConfig.shutdown.drainTimeout
    const began = Date.now()
    app.log.info({ signal, drainTimeout }, 'draining: no new connections; requests in flight may finish')
    const exit = (code: number, how: string) => {
      app.log.info({ ms: Date.now() - began }, how)
      void logs.settle().then(() => process.exit(code))
    }
    setTimeout(() => {
      app.log.warn('drain timeout: closing the connections still open')
      app.server.closeAllConnections()
    }, drainTimeout).unref()
    setTimeout(() => exit(0, 'drain ended at the timeout; exiting'), drainTimeout + 900).unref()
    app.close().then(() => exit(0, 'drained; exiting'), (err: Error) => {
      app.log.error({ err }, 'close failed')
      exit(1, 'exiting after a failed close')
    })
  }
  app.control.reload = reload
  app.control.stop = () => { setImmediate(() => onStop('berth stop')) }
  // A worker hears reload from the primary (drain comes as SIGTERM).
  const onMessage = (m: WorkerMessage): void => {
    if (m.berth === 'reload') void reload().then((o) => process.send?.({ berth: 'reloaded', id: m.id, ...o }))
  }
  if (worker) process.on('message', onMessage)
  process.on('SIGUSR1', onUsr1)
  process.on('SIGHUP', onHup)
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  app.addHook('onClose', async () => {
    await registry?.stop()
    if (config.pidFile !== undefined) await rm(config.pidFile, { force: true })
    process.off('SIGUSR1', onUsr1)
    process.off('SIGHUP', onHup)
    process.off('SIGTERM', onStop)
    process.off('SIGINT', onStop)
    process.off('message', onMessage)
  })
  try {
    await app.listen({ host: config.listen.host, port: config.listen.port })
  } catch (err) {
    await app.close().catch(() => {})
    await registry?.stop()
    throw listenProblem(err as NodeJS.ErrnoException, config)
  }
  if (config.pidFile !== undefined) {
    await mkdir(dirname(config.pidFile), { recursive: true })
    await writeFile(config.pidFile, `${process.pid}\n`)
  }
  if (worker) {
    // prom-client answers the primary's requests for metrics once an AggregatorRegistry exists here too.
    AggregatorRegistry.setRegistries([app.metrics])
    new AggregatorRegistry() // eslint-disable-line no-new
    const admin = app.adminServer?.server.address()
    process.send?.({ berth: 'ready', admin: admin !== null && admin !== undefined && typeof admin === 'object' ? admin.port : null } satisfies WorkerMessage)
  }
  // V8 as always from the first client on: requests decide what it optimizes and keeps. Until then (an
  // idle berth's health probes and metrics scrapes) it stays as it started.
  app.server.once('connection', endLeanStart)
  const address = app.server.address()
  app.log.info({ address, upstreams: config.upstream.servers.map((s) => s.url), tls: config.tls !== undefined, pidFile: config.pidFile }, 'berth listening')
  for (const w of [...configWarnings(config), ...await unreachable(config)]) app.log.warn(w)
  return app
}
