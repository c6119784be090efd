// Running berth: load, listen, and the signals an nginx operator expects (USR1 reopens logs,
// TERM/INT close gracefully).
import { existsSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { hostname } from 'node:os'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from './config/load.js'
import type { BerthConfig } from './config/schema.js'
import { createLogs } from './logging.js'
import { buildApp } from './app.js'
import { makeCerts, trustInstructions } from './certs.js'
import { ensureDevRegistry } from './dev-registry.js'
import type { ConfigError } from './errors.js'

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
  if (!config.tls || (existsSync(config.tls.cert) && existsSync(config.tls.key))) return
  const dir = dirname(config.tls.cert)
  if (dirname(config.tls.key) !== dir || basename(config.tls.cert) !== 'server.crt' || basename(config.tls.key) !== 'server.key') {
    throw new Error(`${config.file}: tls.cert / tls.key are missing; --init-certs only creates DIR/server.crt and DIR/server.key (use berth certs)`)
  }
  const names = ['localhost', hostname()].filter((n, i, a) => a.indexOf(n) === i && /^[A-Za-z0-9.-]+$/.test(n))
  const { files } = await makeCerts({ hosts: names, ips: ['127.0.0.1', '::1'], out: dir })
  say(`berth: ${config.tls.cert} was missing: created a development CA and certificate for ${names.join(', ')}, 127.0.0.1, ::1`)
  say(trustInstructions(files, names, config.listen.port))
}

export async function startServer (configFile: string, opts: StartOptions = {}): Promise<FastifyInstance> {
  const say = opts.say ?? ((line: string) => process.stderr.write(line + '\n'))
  if (opts.initCerts === true || opts.dev === true) await ensureDevCerts(configFile, say)
  const config: BerthConfig = await loadConfig(configFile)
  const registry = opts.dev === true ? await ensureDevRegistry(config, say) : null
  const logs = await createLogs(config)
  const app = await buildApp(config, { logs })
  const onUsr1 = () => {
    logs.reopen()
    app.log.info('log files reopened')
  }
  // SIGHUP: re-read the config and every file it names; apply it whole, or keep the running one.
  let reloading = Promise.resolve()
  const onHup = () => {
    reloading = reloading.then(async () => {
      try {
        const next = await loadConfig(configFile)
        const notes = await app.reload(next)
        app.log.info({ file: next.file, needsRestart: notes }, notes.length > 0 ? 'configuration reloaded; some changes need a restart' : 'configuration reloaded')
      } catch (err) {
        const problems = (err as ConfigError).problems ?? [(err as Error).message]
        app.log.error({ file: configFile, problems }, 'reload refused: the running configuration stays in force')
      }
    })
  }
  // SIGTERM/SIGINT: stop accepting, let requests in flight finish (up to drainTimeout), answer new
  // requests on open connections with 503 + Connection: close, then exit 0.
  let closing = false
  const onStop = (signal: NodeJS.Signals) => {
    if (closing) return
    closing = true
    const drainTimeout = app.berthConfig.shutdown.drainTimeout
    app.log.info({ signal, drainTimeout }, 'draining: no new connections; requests in flight may finish')
    const exit = (code: number) => { void logs.settle().then(() => process.exit(code)) }
    setTimeout(() => {
      app.log.warn('drain timeout: closing the connections still open')
      app.server.closeAllConnections()
    }, drainTimeout).unref()
    setTimeout(() => exit(0), drainTimeout + 900).unref()
    app.close().then(() => exit(0), (err: Error) => {
      app.log.error({ err }, 'close failed')
      exit(1)
    })
  }
  process.on('SIGUSR1', onUsr1)
  process.on('SIGHUP', onHup)
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  app.addHook('onClose', async () => {
    await registry?.stop()
    process.off('SIGUSR1', onUsr1)
    process.off('SIGHUP', onHup)
    process.off('SIGTERM', onStop)
    process.off('SIGINT', onStop)
  })
  await app.listen({ host: config.listen.host, port: config.listen.port })
  const address = app.server.address()
  app.log.info({ address, upstreams: config.upstream.servers.map((s) => s.url), tls: config.tls !== undefined }, 'berth listening')
  return app
}
