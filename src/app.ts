// The composition: one Fastify server and the plugins in the order a request meets them.
import Fastify, { LogController, type FastifyInstance, type FastifyError } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { BerthConfig } from './config/schema.js'
import type { Logs } from './logging.js'
import { serverHttpOptions, serverTlsOptions } from './tls.js'
import { AcmeCertificates } from './acme.js'
import { applyReload } from './reload.js'
import type { Reloadable } from './types.js'
import requestState from '../plugins/request-state.js'
import { answerClientError, BadRequestError, NotFoundError, ShuttingDownError, registryError, replyError, type RegistryErrorShape } from './errors.js'
import tlsListener from '../plugins/tls-listener.js'
import requestTarget from '../plugins/request-target.js'
import clientAddress from '../plugins/client-address.js'
import accessLog from '../plugins/access-log.js'
import bodyLimit from '../plugins/body-limit.js'
import auth from '../plugins/auth.js'
import authorization from '../plugins/authorization.js'
import token from '../plugins/token.js'
import upstreamPool from '../plugins/upstream-pool.js'
import healthProbe from '../plugins/health-probe.js'
import admin from '../plugins/admin.js'
import cluster from '../plugins/cluster.js'
import pressure from '../plugins/pressure.js'
import metrics from '../plugins/metrics.js'
import { registerUserPlugins } from './user-plugins.js'
import { lazySchemaCompilers, keepDefaultHeaderHandling } from './schema-compilers.js'
import proxy from '../plugins/proxy.js'
import blobCache from '../plugins/blob-cache.js'

export interface AppOptions {
  logs: Logs
}

export async function buildApp (config: BerthConfig, opts: AppOptions): Promise<FastifyInstance> {
  // With tls.acme the certificate in force comes from the store (or is a temporary one) before the
  // listener exists; plugins/tls-listener.ts starts the orders once it listens.
  const acme = config.tls?.acme !== undefined ? await AcmeCertificates.open(config.tls.acme, opts.logs.logger) : null
  const https = serverTlsOptions(config, acme)
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
    schemaController: { compilersFactory: lazySchemaCompilers() },
    frameworkErrors (err, _request, reply) {
      replyError(reply, new BadRequestError(err.message))
    }
  }) as unknown as FastifyInstance
  keepDefaultHeaderHandling(app)

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
  app.decorate('control', { reload: null, stop: null })
  app.decorate('startedAt', new Date())
  app.decorate('acme', acme)
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
    replyError(reply, err)
  })
  app.setNotFoundHandler((_request, reply) => { replyError(reply, new NotFoundError()) })

  let closing = false
  app.addHook('preClose', (done) => { closing = true; done() })
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) { done(); return }
    reply.header('connection', 'close')
    done(new ShuttingDownError())
  })

  await app.register(requestState)
  // The metrics registry first: every owner of state adds its collectors to it.
  await app.register(metrics)
  await app.register(tlsListener)
  await app.register(upstreamPool)
  await app.register(blobCache)
  await app.register(healthProbe)
  await app.register(admin)
  await app.register(cluster)
  // Then the request path, in the order a request meets it. Logging first, so that refused requests are
  // logged too; it needs the client's address.
  await app.register(clientAddress)
  await app.register(accessLog, { logs: opts.logs })
  await app.register(pressure)
  await app.register(requestTarget)
  if (config.auth) {
    await app.register(auth)
    await app.register(authorization)
    if (config.auth.token !== undefined) await app.register(token)
  }
  // After auth: a stranger learns nothing of the limit (401), and the 413's log line names the user.
  await app.register(bodyLimit)
  // Custom plugins, then the proxy inside the innermost plugin context (see src/user-plugins.ts).
  await registerUserPlugins(app, config, async (context) => { await context.register(proxy) })
  return app
}
