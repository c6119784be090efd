// What the requester may do: the registry action (from plugins/request-target.ts) checked against the
// access rules (src/auth/rules.ts). 401 with a challenge for anonymous clients, 403 DENIED for users
// without the right, 404 for what is not a registry API call.
import fp from 'fastify-plugin'
import { AccessPolicy, decide, grant } from '../src/auth/rules.js'
import { scopeOf } from '../src/auth/token.js'
import type { BerthUser, ResourceActions } from '../src/types.js'
import { DeniedError, NameInvalidError, NotFoundError, replyChallenge, type RegistryErrorShape } from '../src/errors.js'

export default fp(async function access (fastify) {
  const cfg = fastify.berthConfig.auth
  if (!cfg) throw new Error('berth-authorization registered without an auth section')
  let policy = new AccessPolicy(cfg)
  fastify.decorate('grantAccess', (user: BerthUser | null, requested: ResourceActions[]) => grant(policy, user, requested))
  fastify.onReload({
    name: 'access',
    async prepare (next) {
      const fresh = new AccessPolicy(next.auth as NonNullable<typeof next.auth>)
      return { commit () { policy = fresh } }
    }
  })

  // The token endpoint decides itself. It exists only in token mode, fixed until a restart; Fastify builds
  // `routeOptions` anew on every read, so the other mode does not read it.
  const tokenMode = cfg.token !== undefined
  const { challenge } = fastify.authState
  fastify.addHook('onRequest', (request, reply, done) => {
    if (tokenMode && request.routeOptions.config.berthToken === true) { done(); return }
    const verdict = decide(policy, request.user, request.registryAction, request.raw.method, request.raw.url ?? '')
    if (verdict.allowed) {
      request.catalogFilter = verdict.catalog
      done()
      return
    }
    switch (verdict.why) {
      case 'not-api': done(new NotFoundError()); return
      case 'name': done(new NameInvalidError()); return
      case 'challenge': {
        // In token mode a token that lacks the grant: the scope it needs, as the registry would say.
        const scope = scopeOf(verdict.action, verdict.repository)
        replyChallenge(reply, challenge(request, scope === null ? [] : [scope], request.user === null ? undefined : 'insufficient_scope'))
        return
      }
      case 'denied': {
        // As the registry's own token errors: what was refused, on which repository (a name the client
        // sent: berth never says whether it exists).
        const err: RegistryErrorShape = new DeniedError()
        err.detail = [{ Type: verdict.repository === undefined ? 'registry' : 'repository', Name: verdict.repository ?? 'catalog', Action: verdict.action }]
        request.log.debug({ user: request.user?.name, client: request.clientAddress, action: verdict.action, repository: verdict.repository }, 'access denied: no rule allows it')
        done(err)
      }
    }
  })
}, {
  name: 'berth-authorization',
  fastify: '5.x',
  dependencies: ['berth-auth', 'berth-request-target'],
  decorators: { fastify: ['berthConfig', 'onReload', 'authState'], request: ['registryAction', 'catalogFilter', 'user', 'clientAddress'] }
})
