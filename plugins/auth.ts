// Who is asking: HTTP Basic credentials checked against the htpasswd file (nginx auth_basic), with a
// credential cache, brute-force throttling and a watched file. What they may do is plugins/access.ts.
//
// @fastify/basic-auth parses the header (RFC 7617: scheme, token68, control characters, user:pass) and
// calls `validate`; berth wraps it because it sends no challenge unless `authenticate` is set, adds
// `charset` to the challenge when decoding UTF-8, does not escape the realm, and has no cache,
// throttling, htpasswd parsing or anonymous access.
import fp from 'fastify-plugin'
import basicAuth from '@fastify/basic-auth'
import { UserStore } from '../src/auth/users.js'
import { registerAuthMetrics } from '../src/auth/metrics.js'
import { Throttle } from '../src/auth/throttle.js'
import type { AuthStats } from '../src/types.js'
import { TooManyFailuresError, UnauthorizedError, challenged, type RegistryErrorShape } from '../src/errors.js'

/** The user name of a Basic credential (for the debug log of a failed login), or null. */
function loginName (header: string | undefined): string | null {
  const m = /^basic +([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '')
  if (m === null) return null
  const text = Buffer.from(m[1], 'base64').toString('utf8')
  const colon = text.indexOf(':')
  return colon === -1 ? null : text.slice(0, colon)
}

export default fp(async function auth (fastify) {
  const cfg = fastify.berthConfig.auth
  if (!cfg) throw new Error('berth-auth registered without an auth section')
  let users = await UserStore.open(cfg.htpasswd, cfg.cacheSize)
  users.watch(fastify.log)
  const throttle = new Throttle(cfg.throttle)
  let challengeValue = `Basic realm="${cfg.realm}"`
  const stats: AuthStats = { successes: 0, failures: 0, throttled: 0 }
  fastify.decorate('authState', { getter: () => ({ users, throttle, challenge: challengeValue, stats }) })
  registerAuthMetrics(fastify.metrics, () => fastify.authState)
  fastify.addHook('onClose', async () => { users.close() })
  // Reload: a new user store (the file may have moved), new throttle limits (counters kept), new realm.
  fastify.onReload({
    name: 'auth',
    async prepare (next) {
      const auth = next.auth as NonNullable<typeof next.auth>
      const fresh = await UserStore.open(auth.htpasswd, auth.cacheSize)
      return {
        commit () {
          users.close()
          users = fresh
          users.watch(fastify.log)
          throttle.update(auth.throttle)
          challengeValue = `Basic realm="${auth.realm}"`
        }
      }
    }
  })

  await fastify.register(basicAuth, {
    strictCredentials: false,
    utf8: true,
    authenticate: false,
    async validate (username, password, req) {
      const user = await users.verify(username, password) // the store in force now
      if (user === null) throw new UnauthorizedError()
      req.user = { name: user }
    }
  })

  fastify.addHook('onRequest', (request, reply, done) => {
    // No credentials: anonymous. plugins/authorization.ts decides, and challenges when it must.
    if (request.headers.authorization === undefined) { done(); return }
    const address = request.clientAddress
    const wait = throttle.blockedFor(address)
    if (wait > 0) {
      stats.throttled++
      reply.header('retry-after', String(Math.ceil(wait / 1000)))
      done(new TooManyFailuresError())
      return
    }
    fastify.basicAuth(request, reply, (err?: Error) => {
      if (err === undefined || err === null) { stats.successes++; done(); return }
      stats.failures++
      // Never the password: the user name as sent, and why.
      request.log.debug({ user: loginName(request.headers.authorization), client: address, reason: (err as RegistryErrorShape).registryCode === 'UNAUTHORIZED' ? 'wrong user or password' : 'malformed Authorization header' }, 'login failed')
      if (throttle.fail(address)) request.log.warn({ client: address, blockMs: throttle.block }, 'too many failed logins: address blocked')
      // A malformed header (not base64, no colon, another scheme) gets the same 401 as a wrong password.
      done((err as RegistryErrorShape).registryCode === 'UNAUTHORIZED' ? (reply.header('www-authenticate', challengeValue), err) : challenged(reply, challengeValue))
    })
  })
}, {
  name: 'berth-auth',
  fastify: '5.x',
  dependencies: ['berth-request-target', 'berth-client-address', 'berth-metrics'],
  decorators: { fastify: ['berthConfig', 'onReload', 'metrics'], request: ['clientAddress', 'user'] }
})
