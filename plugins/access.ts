// What the requester may do: the registry action (from plugins/request-target.ts) checked against the
// access rules. 401 with a challenge for anonymous clients, 403 DENIED for users without the right.
import fp from 'fastify-plugin'
import { ALL_REPOSITORIES, AccessPolicy, type Action } from '../src/auth/access.js'
import { DeniedError, NameInvalidError, NotFoundError } from '../src/errors.js'
import { challenge } from './auth.js'
import { REPOSITORY_NAME } from './request-target.js'
import { mountSources } from '../src/registry/parameters.js'

function methodAction (method: string): Action {
  switch (method) {
    case 'POST': case 'PUT': case 'PATCH': return 'push'
    case 'DELETE': return 'delete'
    default: return 'pull' // GET, HEAD, OPTIONS
  }
}


export default fp(async function access (fastify) {
  const cfg = fastify.berthConfig.auth
  if (!cfg) throw new Error('berth-access registered without an auth section')
  let policy = new AccessPolicy(cfg)
  fastify.onReload({
    name: 'access',
    async prepare (next) {
      const fresh = new AccessPolicy(next.auth as NonNullable<typeof next.auth>)
      return { commit () { policy = fresh } }
    }
  })

  fastify.addHook('onRequest', (request, reply, done) => {
    const action = request.registryAction
    const user = request.user?.name ?? null
    const refuse = () => done(user === null ? challenge(reply, fastify.authState.challenge) : new DeniedError())
    if (action === null || action.kind === 'other') {
      // Deny by default: a path that is not a registry API call berth understands is not forwarded,
      // so no endpoint (today's or a future one) can act on a repository unchecked.
      done(new NotFoundError())
      return
    }
    if (action.kind === 'base') {
      // GET /v2/ is what `docker login` checks: open to every authenticated user, never anonymous.
      if (user === null) { refuse(); return }
      done()
      return
    }
    if (action.kind === 'catalog') {
      const filter = policy.catalogFilter(user)
      if (filter === null) { refuse(); return }
      // The proxy lists only what this lets through (src/registry/catalog.ts).
      request.catalogFilter = filter === ALL_REPOSITORIES ? null : filter
      done()
      return
    }
    const repository = action.repository as string
    if (!policy.allows(user, methodAction(request.raw.method ?? 'GET'), repository)) { refuse(); return }
    for (const from of action.kind === 'upload' ? mountSources(request.raw.method, request.raw.url ?? '') : []) {
      if (!REPOSITORY_NAME.test(from) || from.length > 255) { done(new NameInvalidError()); return }
      if (!policy.allows(user, 'pull', from)) { refuse(); return }
    }
    done()
  })
}, { name: 'berth-access', fastify: '5.x', dependencies: ['berth-auth', 'berth-request-target'] })
