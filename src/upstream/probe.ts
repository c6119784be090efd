// Active health probes, Tengine's `check interval rise fall timeout type port`: per server, never
// overlapping, on timers that do not keep the process alive (the @fastify/under-pressure pattern: the
// next probe is scheduled only once the last one finished).
import net from 'node:net'
import http from 'node:http'
import https from 'node:https'
import type { FastifyBaseLogger } from 'fastify'
import type { BerthConfig } from '../config/schema.js'
import { tlsName, type UpstreamTls } from './dispatcher.js'
import type { Upstream } from './upstream.js'

export type HealthCheck = NonNullable<BerthConfig['upstream']['healthCheck']>

export function tcpProbe (host: string, port: number, timeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no connection within ${timeout} ms`)) }, timeout)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve() })
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

function httpProbe (s: Upstream, check: HealthCheck, port: number, tls: UpstreamTls): Promise<void> {
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
      ? https.request({ ...options, ca: tls.ca, rejectUnauthorized: tls.verify, servername: tlsName(s.hostname) }, done)
      : http.request(options, done)
    // The timeout covers the whole probe, not just idle gaps.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${check.timeout} ms`)), check.timeout)
    req.once('close', () => clearTimeout(timer))
    req.once('error', reject)
    req.end()
  })
}

/** Probes one server until the returned function is called, one probe at a time. */
export function startProbing (s: Upstream, check: HealthCheck, tls: UpstreamTls, log: FastifyBaseLogger): () => void {
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
    const ms = Math.round((performance.now() - started) * 10) / 10
    const change = s.recordProbe({ ok: error === undefined, at: Date.now(), ms, ...(error !== undefined ? { error } : {}) }, check.rise, check.fall)
    if (change === 'down') log.warn({ upstream: s.url, error }, 'upstream marked down by health probes')
    if (change === 'up') log.info({ upstream: s.url }, 'upstream marked up by health probes')
    timer = setTimeout(() => { void run() }, check.interval).unref()
  }
  timer = setTimeout(() => { void run() }, 0).unref()
  return () => {
    stopped = true
    if (timer !== null) clearTimeout(timer)
  }
}
