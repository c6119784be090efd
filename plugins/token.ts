// Token mode's endpoint (auth.token): GET /token (distribution's token.md: Basic credentials or none, the
// `scope` parameters, `service`) and POST /token (oauth.md: grant_type=password with the credentials in
// the form). The caller is authenticated as everywhere else (plugins/auth.ts: htpasswd, access keys,
// LDAP, a client certificate); the token grants what it asked for and the access rules allow.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { parseScope, type TokenIssuer } from '../src/auth/token.js'
import { BadRequestError, challenged, registryError } from '../src/errors.js'
import type { BerthUser } from '../src/types.js'

const many = (v: unknown): string[] => v === undefined ? [] : (Array.isArray(v) ? v : [v]).filter((s): s is string => typeof s === 'string')

export default fp(async function token (fastify) {
  const issuer = (): TokenIssuer => fastify.authState.token as TokenIssuer

  async function answer (request: FastifyRequest, reply: FastifyReply, user: BerthUser | null, service: string | undefined, scopes: string[], oauth: boolean) {
    const config = issuer().config
    if (service !== undefined && service !== config.service) throw registryError(400, 'UNSUPPORTED', `unknown service ${JSON.stringify(service).slice(0, 80)}: this token server serves ${config.service}`)
    const requested = scopes.flatMap((s) => s.split(' ')).map(parseScope).filter((s) => s !== null)
    const access = fastify.grantAccess(user, requested)
    // Nothing for an anonymous caller: ask for credentials (docker then says "authentication required").
    if (user === null && access.length === 0) throw challenged(reply, fastify.authState.challenge(request))
    const body = await issuer().issue(user, access)
    request.log.debug({ user: user?.name ?? null, key: user?.key, scopes: requested.length, granted: access.length }, 'token issued')
    reply.header('cache-control', 'no-store')
    return oauth
      ? { access_token: body.access_token, token_type: 'Bearer', expires_in: body.expires_in, issued_at: body.issued_at, scope: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ') }
      : body
  }

  fastify.get('/token', { config: { berthToken: true } }, async (request, reply) => {
    const q = request.query as Record<string, unknown>
    return await answer(request, reply, request.user, typeof q.service === 'string' ? q.service : undefined, many(q.scope), false)
  })

  fastify.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)))
  })
  fastify.post('/token', { config: { berthToken: true } }, async (request, reply) => {
    const form = request.body as Record<string, string> | undefined
    if (form === undefined || typeof form !== 'object') throw new BadRequestError('expected an application/x-www-form-urlencoded body')
    // refresh_token and the rest: docker falls back to its stored password, then to GET.
    if (form.grant_type !== 'password') throw registryError(400, 'UNSUPPORTED', `unsupported grant_type ${JSON.stringify(form.grant_type ?? '').slice(0, 40)}: use password`)
    if (typeof form.username !== 'string' || typeof form.password !== 'string') throw new BadRequestError('grant_type=password needs username and password')
    const user = await fastify.authState.attempt(request, form.username, form.password).catch((err: Error & { retryAfter?: number }) => {
      if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter))
      throw err
    })
    return await answer(request, reply, user, form.service, many(form.scope), true)
  })
}, {
  name: 'berth-token',
  fastify: '5.x',
  dependencies: ['berth-auth', 'berth-authorization'],
  decorators: { fastify: ['authState', 'grantAccess'], request: ['user'] }
})
