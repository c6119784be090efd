// Who is asking. Edge mode: HTTP Basic credentials (htpasswd, access keys, LDAP; src/auth/identities.ts)
// or a client certificate, with a credential cache and brute-force throttling. Token mode (auth.token):
// a Bearer token berth issued, verified here on every request (a cache hit, no password hash), and any
// other request challenged toward berth's /token (plugins/token.ts). What they may do is
// plugins/authorization.ts.
//
// @fastify/basic-auth parses the header (RFC 7617: scheme, token68, control characters, user:pass) and
// calls `validate`; berth wraps it because it sends no challenge unless `authenticate` is set, adds
// `charset` to the challenge when decoding UTF-8, does not escape the realm, and has no cache,
// throttling, htpasswd parsing or anonymous access.
import fp from 'fastify-plugin'
import basicAuth from '@fastify/basic-auth'
import type { FastifyRequest } from 'fastify'
import { Identities, attempt } from '../src/auth/identities.js'
import { registerAuthMetrics } from '../src/auth/metrics.js'
import { Throttle } from '../src/auth/throttle.js'
import { challengeFor, requestScopes } from '../src/auth/challenge.js'
import type { AuthStats } from '../src/types.js'
import { TooManyFailuresError, replyChallenge, type RegistryErrorShape } from '../src/errors.js'

export default fp(async function auth (fastify) {
  const cfg = fastify.berthConfig.auth
  if (!cfg) throw new Error('berth-auth registered without an auth section')
  let identities = await Identities.open(cfg)
  identities.watch(fastify.log)
  identities.cluster = fastify.cluster
  // With a cluster, lockouts are shared by every replica (src/cluster/state.ts).
  // Workers of one process without Redis: lockouts decided by the primary (src/cluster/worker-throttle.ts).
  const throttle = fastify.cluster !== null
    ? new (await import('../src/cluster/state.js')).SharedThrottle(cfg.throttle, fastify.cluster)
    : process.env.BERTH_WORKERS !== undefined ? new (await import('../src/cluster/worker-throttle.js')).WorkerThrottle(cfg.throttle) : new Throttle(cfg.throttle)
  const stats: AuthStats = { successes: 0, failures: 0, throttled: 0 }
  const challenge = (request: FastifyRequest, scopes: string[] = [], error?: string): string => challengeFor(fastify.berthConfig, request, scopes, error)
  const check = async (request: FastifyRequest, user: string, password: string) => await attempt(identities, throttle, stats, request.log, request.clientAddress, user, password)
  fastify.decorate('authState', {
    getter: () => ({ users: identities.users, token: identities.token, throttle, challenge, stats, attempt: check })
  })
  registerAuthMetrics(fastify.metrics, () => fastify.authState)
  fastify.addHook('onClose', async () => { identities.close() })
  // Reload: new users, keys, directory and token key (the files may have moved); new throttle limits
  // (counters kept). The realm and the challenge follow the configuration in force.
  fastify.onReload({
    name: 'auth',
    async prepare (next) {
      const fresh = await Identities.open(next.auth as NonNullable<typeof next.auth>)
      return {
        commit () {
          identities.close()
          identities = fresh
          identities.watch(fastify.log)
          identities.cluster = fastify.cluster
          throttle.update(fresh.config.throttle)
        },
        abort () { fresh.close() }
      }
    }
  })

  await fastify.register(basicAuth, {
    strictCredentials: false,
    utf8: true,
    authenticate: false,
    async validate (username, password, req) {
      req.user = await check(req, username, password)
    }
  })

  fastify.addHook('onRequest', (request, reply, done) => {
    const header = request.headers.authorization
    const token = identities.token
    if (token !== null && request.routeOptions.config.berthToken !== true) {
      // Token mode: only a token berth issued passes; anything else is sent to the realm for one.
      const bearer = /^bearer +(\S+)\s*$/i.exec(header ?? '')
      if (bearer === null) { replyChallenge(reply, challenge(request, requestScopes(request))); return }
      token.verify(bearer[1]).then((found) => {
        if (found === undefined || (found.user?.key !== undefined && !identities.keyActive(found.user.key))) {
          replyChallenge(reply, challenge(request, requestScopes(request), 'invalid_token'))
          return
        }
        request.user = found.user
        done()
      }, done)
      return
    }
    if (header === undefined) {
      // No credentials: a client certificate's user, or anonymous (plugins/authorization.ts decides).
      request.user = identities.fromCertificate(request.raw.socket)
      done()
      return
    }
    const wait = throttle.blockedFor(request.clientAddress)
    if (wait > 0) {
      stats.throttled++
      reply.header('retry-after', String(Math.ceil(wait / 1000)))
      done(new TooManyFailuresError())
      return
    }
    fastify.basicAuth(request, reply, (err?: Error) => {
      if (err === undefined || err === null) { done(); return }
      const e = err as RegistryErrorShape
      if (e.registryCode === undefined) {
        // A malformed header (not base64, no colon, another scheme): a failed login like a wrong password.
        stats.failures++
        request.log.debug({ client: request.clientAddress, reason: 'malformed Authorization header' }, 'login failed')
        if (throttle.fail(request.clientAddress)) request.log.warn({ client: request.clientAddress, blockMs: throttle.block }, 'too many failed logins: address blocked')
      }
      if (e.registryCode === undefined || e.registryCode === 'UNAUTHORIZED') replyChallenge(reply, challenge(request))
      else done(e)
    })
  })
}, {
  name: 'berth-auth',
  fastify: '5.x',
  dependencies: ['berth-request-target', 'berth-client-address', 'berth-metrics', 'berth-cluster'],
  decorators: { fastify: ['berthConfig', 'onReload', 'metrics', 'cluster'], request: ['clientAddress', 'user'] }
})
