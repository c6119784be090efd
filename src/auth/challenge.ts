// The WWW-Authenticate of a 401. Edge mode: Basic with the realm. Token mode: Bearer, pointing at berth's
// own /token with the service and the scopes the request needs (what the registry itself would send), so
// a client fetches the right token in one round trip.
import type { FastifyRequest } from 'fastify'
import type { BerthConfig } from '../config/schema.js'
import { isRepositoryName, methodAction } from '../registry/path.js'
import { mountSources } from '../registry/parameters.js'
import { HOST } from '../registry/target.js'
import { scopeOf } from './token.js'

export function challengeFor (config: BerthConfig, request: FastifyRequest, scopes: string[], error?: string): string {
  const auth = config.auth as NonNullable<BerthConfig['auth']>
  if (auth.token === undefined || request.routeOptions.config.berthToken === true) return `Basic realm="${auth.realm}"`
  const local = request.raw.socket.localAddress ?? '127.0.0.1'
  const host = config.listen.publicHost ?? (HOST.test(request.headers.host ?? '') ? request.headers.host as string : `${local.includes(':') ? `[${local}]` : local}:${request.raw.socket.localPort ?? config.listen.port}`)
  let value = `Bearer realm="${auth.token.realm ?? `https://${host}/token`}",service="${auth.token.service}"`
  if (scopes.length > 0) value += `,scope="${scopes.join(' ')}"`
  if (error !== undefined) value += `,error="${error}"`
  return value
}

/** The scopes a registry request needs: its repository with the method's action, and every mount source. */
export function requestScopes (request: FastifyRequest): string[] {
  const action = request.registryAction
  if (action === null || action.kind === 'other' || action.kind === 'base') return []
  if (action.kind === 'catalog') return ['registry:catalog:*']
  const scopes = [scopeOf(methodAction(request.raw.method), action.repository as string) as string]
  if (action.kind === 'upload') for (const from of mountSources(request.raw.method, request.raw.url ?? '')) if (isRepositoryName(from)) scopes.push(`repository:${from}:pull`)
  return scopes
}
