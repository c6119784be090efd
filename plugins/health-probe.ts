// Active health probes, Tengine's `check interval rise fall timeout type port`: per server, never
// overlapping, on timers that do not keep the process alive (the @fastify/under-pressure pattern:
// the next probe is scheduled only once the last one finished).
import fp from 'fastify-plugin'
import net from 'node:net'
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import type { FastifyBaseLogger } from 'fastify'
import type { BerthConfig } from '../src/config/schema.js'
import { isIpAddress } from '../src/net.js'
import type { Upstream } from './upstream-pool.js'

type HealthCheck = NonNullable<BerthConfig['upstream']['healthCheck']>

/** The state machine: `fall` failures in a row mark a server down, `rise` successes mark it up. */
export function recordProbe (s: Pick<Upstream, 'state' | 'successes' | 'failuresInARow'>, ok: boolean, rise: number, fall: number): 'up' | 'down' | null {
  if (ok) {
    s.successes++
    s.failuresInARow = 0
    if (s.state === 'down' && s.successes >= rise) { s.state = 'up'; return 'up' }
  } else {
    s.failuresInARow++
    s.successes = 0
    if (s.state === 'up' && s.failuresInARow >= fall) { s.state = 'down'; return 'down' }
  }
  return null
}

export function tcpProbe (host: string, port: number, timeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no connection within ${timeout} ms`)) }, timeout)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve() })
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

export function httpProbe (s: Upstream, check: HealthCheck, port: number, tls: { ca?: Buffer, verify: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    const options = {
      host: s.hostname,
      port,
      path: check.path,
      method: 'GET',
      agent: false as const,
      timeout: check.timeout,
      headers: { 'user-agent': 'berth-health-probe', host: s.address }
    }
    const done = (res: http.IncomingMessage) => {
      res.resume()
      if (check.expect.includes(res.statusCode ?? 0)) resolve()
      else reject(new Error(`status ${res.statusCode}`))
    }
    const req = s.https
      ? https.request({ ...options, ca: tls.ca, rejectUnauthorized: tls.verify, servername: isIpAddress(s.hostname) ? undefined : s.hostname }, done)
      : http.request(options, done)
    // The timeout covers the whole probe, not just idle gaps.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${check.timeout} ms`)), check.timeout)
    req.once('close', () => clearTimeout(timer))
    req.once('error', reject)
    req.end()
  })
}

/** Probes one server forever (until stop), one probe at a time. */
export function startProbing (s: Upstream, check: HealthCheck, tls: { ca?: Buffer, verify: boolean }, log: FastifyBaseLogger): () => void {
  let stopped = false
  let timer: NodeJS.Timeout | null = null
  const port = check.port ?? s.port
  const run = async () => {
    const started = performance.now()
    let error: string | undefined
    try {
      if (check.type === 'tcp') await tcpProbe(s.hostname, port, check.timeout)
      else await httpProbe(s, check, port, tls)
    } catch (err) {
      error = (err as Error).message
    }
    if (stopped) return
    s.lastProbe = { ok: error === undefined, at: Date.now(), ms: Math.round((performance.now() - started) * 10) / 10, ...(error !== undefined ? { error } : {}) }
    const change = recordProbe(s, error === undefined, check.rise, check.fall)
    if (change === 'down') log.warn({ upstream: s.url, error, failures: s.failuresInARow }, 'upstream marked down by health probes')
    if (change === 'up') log.info({ upstream: s.url, successes: s.successes }, 'upstream marked up by health probes')
    timer = setTimeout(() => { void run() }, check.interval).unref()
  }
  timer = setTimeout(() => { void run() }, 0).unref()
  return () => {
    stopped = true
    if (timer !== null) clearTimeout(timer)
  }
}

export default fp(async function healthProbe (fastify) {
  let stops: Array<() => void> = []
  const start = (config: BerthConfig) => {
    for (const stop of stops) stop()
    const { healthCheck, tls } = config.upstream
    if (!healthCheck) { stops = []; return }
    const tlsOpts = { ca: tls.ca ? readFileSync(tls.ca) : undefined, verify: tls.verify }
    stops = fastify.upstreams.servers.map((s) => startProbing(s, healthCheck, tlsOpts, fastify.log))
  }
  fastify.addHook('onReady', async () => { start(fastify.berthConfig) })
  fastify.addHook('onClose', async () => { for (const stop of stops) stop() })
  // Reload: probe the new server list with the new settings (registered after the pool, so it runs after).
  fastify.onReload({ name: 'health-probe', async prepare (next) { return { commit () { start(next) } } } })
}, { name: 'berth-health-probe', fastify: '5.x', dependencies: ['berth-upstream-pool'] })
