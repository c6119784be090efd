// Parses the request target once: refuses what is not a plain origin-form path and decorates
// request.registryAction, the one place every later plugin (auth, access, metrics, user plugins) reads.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RegistryAction } from '../src/index.js'
import { BadRequestTargetError, NameInvalidError } from '../src/errors.js'

// distribution's reference grammar: path components of lower-case alphanumerics joined by separators.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const NAME = `${COMPONENT}(?:/${COMPONENT})*`
const REPO_ROUTE = new RegExp(`^/v2/(${NAME})/(manifests|blobs|tags|referrers)/(.*)$`)
const REPO_INTENDED = /^\/v2\/.+\/(manifests|blobs|tags|referrers)\//

/**
 * The one canonical form berth checks and forwards: segments of the characters registry paths use
 * (names, tags, digests, upload ids), none starting with a dot (so no `.` or `..`), no empty segment
 * except a trailing slash, and no percent-encoding at all (`%2F`, `%2e`, `%252e`, overlong UTF-8), no
 * backslash, no `;`. Anything else could be read differently by berth and by the registry.
 */
const CANONICAL_PATH = /^(?:\/[A-Za-z0-9_:+=-][A-Za-z0-9._:+=-]*)*\/?$/

export function parseRegistryPath (path: string): RegistryAction {
  if (path === '/v2/' || path === '/v2') return { kind: 'base', repository: null, reference: null }
  if (path === '/v2/_catalog') return { kind: 'catalog', repository: null, reference: null }
  const m = REPO_ROUTE.exec(path)
  if (m === null) return { kind: 'other', repository: null, reference: null }
  const [, repository, segment, rest] = m
  if (segment === 'blobs' && (rest === 'uploads' || rest.startsWith('uploads/'))) {
    const id = rest.slice('uploads/'.length)
    return { kind: 'upload', repository, reference: id === '' ? null : id }
  }
  const kind = segment === 'manifests' ? 'manifest' : segment === 'blobs' ? 'blob' : segment === 'tags' ? 'tags' : 'referrers'
  return { kind, repository, reference: rest === '' || rest === 'list' && kind === 'tags' ? null : rest }
}

export function registryActionHook (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
  const url = request.raw.url ?? ''
  // Absolute-form targets (GET http://host/v2/...) are for forward proxies; berth is not one.
  if (url.charCodeAt(0) !== 47 /* / */) {
    reply.header('connection', 'close')
    done(new BadRequestTargetError('expected a path starting with /'))
    return
  }
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (!CANONICAL_PATH.test(path)) {
    done(new BadRequestTargetError('the path must not hold encoded characters, dot or empty segments'))
    return
  }
  const action = parseRegistryPath(path)
  if ((action.kind === 'other' && REPO_INTENDED.test(path)) || (action.repository !== null && action.repository.length > 255)) {
    done(new NameInvalidError())
    return
  }
  request.registryAction = action
  done()
}

export default fp(async function requestTarget (fastify) {
  fastify.decorateRequest('registryAction', null)
  fastify.addHook('onRequest', registryActionHook)
}, { name: 'berth-request-target', fastify: '5.x' })
