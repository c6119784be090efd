// The composition: one Fastify server and the plugins in the order a request meets them.
import Fastify, { LogController, type FastifyInstance, type FastifyError } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { BerthConfig } from './config/schema.js'
import type { Logs } from './logging.js'
import { serverHttpOptions, serverTlsOptions } from './tls.js'
import { applyReload } from './reload.js'
import type { Reloadable } from './types.js'
import requestState from '../plugins/request-state.js'
import { API_VERSION, API_VERSION_HEADER, answerClientError, BadRequestError, NotFoundError, ShuttingDownError, registryError, registryErrorBody, type RegistryErrorShape } from './errors.js'
import tlsListener from '../plugins/tls-listener.js'
import requestTarget from '../plugins/request-target.js'
import clientAddress from '../plugins/client-address.js'
import accessLog from '../plugins/access-log.js'
import bodyLimit from '../plugins/body-limit.js'
import auth from '../plugins/auth.js'
import access from '../plugins/access.js'
import upstreamPool from '../plugins/upstream-pool.js'
import healthProbe from '../plugins/health-probe.js'
import admin from '../plugins/admin.js'
import pressure from '../plugins/pressure.js'
import metrics from '../plugins/metrics.js'
import { registerUserPlugins } from './user-plugins.js'
import proxy from '../plugins/proxy.js'
import blobCache from '../plugins/blob-cache.js'

export interface AppOptions {
  logs: Logs
}

function sendError (err: RegistryErrorShape, reply: import('fastify').FastifyReply): void {
  const status = err.statusCode !== undefined && err.statusCode >= 400 ? err.statusCode : 500
  // A refused upload's body was never read: close rather than let Node drain hundreds of megabytes.
  const req = reply.request.raw
  if (!req.complete && (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0')) {
    reply.header('connection', 'close')
  }
  // Fastify's own 4xx errors (bad content type, bad URL) keep their status and say what was wrong.
  if (err.registryCode === undefined && status < 500) err.registryCode = 'UNSUPPORTED'
  const body = registryErrorBody(err)
  reply.request.bodyBytesSent = reply.request.raw.method === 'HEAD' ? 0 : Buffer.byteLength(body)
  reply.code(status)
    .header(API_VERSION_HEADER, API_VERSION)
    .type('application/json; charset=utf-8')
    .send(body)
}

export async function buildApp (config: BerthConfig, opts: AppOptions): Promise<FastifyInstance> {
  const https = serverTlsOptions(config)
  const app = Fastify({
    loggerInstance: opts.logs.logger,
    // The access log plugin writes one line per request; Fastify's own per-request lines would double it.
    logController: new LogController({ disableRequestLogging: true }),
    ...(https ? { https } : { http: serverHttpOptions(config) }),
    // No whole-request deadline: a 2 GB layer over a slow link must not hit one. The proxy ends a
    // transfer only after `upstream.timeouts.idle` without a byte moving.
    requestTimeout: 0,
    keepAliveTimeout: 75_000,
    // berth answers requests that arrive while closing itself, with a registry-shaped 503 (below).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    clientErrorHandler: answerClientError,
    frameworkErrors (err, _request, reply) {
      sendError(new BadRequestError(err.message), reply)
    }
  }) as unknown as FastifyInstance

  // Answer `Expect: 100-continue` ourselves (the proxy does, once every check passed), so a refused
  // upload is refused before the client sends its body.
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => { app.server.emit('request', req, res) })

  // One reference to the running configuration; a reload swaps it after every part committed.
  let current = config
  app.decorate('berthConfig', { getter: () => current })
  const reloadables: Reloadable[] = []
  app.decorate('registryError', registryError)
  app.decorate('onReload', (part: Reloadable) => { reloadables.push(part) })
  app.decorate('reloads', { ok: 0, failed: 0 })
  app.decorate('reload', async (next: BerthConfig) => {
    try {
      const { config: applied, notes } = await applyReload(reloadables, current, next)
      current = applied
      opts.logs.logger.level = applied.log.level
      app.reloads.ok++
      return notes
    } catch (err) {
      app.reloads.failed++
      throw err
    }
  })
  app.setErrorHandler((err: FastifyError & RegistryErrorShape, request, reply) => {
    if ((err.statusCode ?? 500) >= 500) request.log.error({ err }, 'request failed')
    sendError(err, reply)
  })
  app.setNotFoundHandler((_request, reply) => { sendError(new NotFoundError(), reply) })

  let closing = false
  app.addHook('preClose', (done) => { closing = true; done() })
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) { done(); return }
    reply.header('connection', 'close')
    done(new ShuttingDownError())
  })

  await app.register(requestState)
  await app.register(tlsListener)
  // The pool, its probes and the admin listener first: metrics and the status page read them.
  await app.register(upstreamPool)
  await app.register(blobCache)
  await app.register(healthProbe)
  await app.register(admin)
  // Then the request path, in the order a request meets it. Logging and metrics first, so that refused
  // requests are logged and counted too; they need the client's address.
  await app.register(clientAddress)
  await app.register(accessLog, { logs: opts.logs })
  await app.register(metrics)
  await app.register(pressure)
  await app.register(requestTarget)
  await app.register(bodyLimit)
  if (config.auth) {
    await app.register(auth)
    await app.register(access)
  }
  // Custom plugins, then the proxy inside the innermost plugin context (see src/user-plugins.ts).
  await registerUserPlugins(app, config, async (context) => { await context.register(proxy) })
  return app
}
