// Parses the request target once: refuses what is not a plain origin-form path and decorates
// request.registryAction, the one place every later plugin (auth, access, metrics, user plugins) reads.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RegistryAction } from '../src/types.js'
import { BadRequestError, BadRequestTargetError, NameInvalidError } from '../src/errors.js'
import { formBodyProblem } from '../src/registry/parameters.js'

// distribution's reference grammar: path components of lower-case alphanumerics joined by separators.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const NAME = `${COMPONENT}(?:/${COMPONENT})*`
const REPO_ROUTE = new RegExp(`^/v2/(${NAME})/(manifests|blobs|tags|referrers)/(.*)$`)
/** A whole repository name in distribution's grammar (also for a mount's `from`). */
export const REPOSITORY_NAME = new RegExp(`^${NAME}$`)
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

const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

/** What Node's parser lets through and a proxy must not: HTTP/0.9, two Hosts, chunked HTTP/1.0. */
function framingProblem (req: FastifyRequest['raw']): string | null {
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1) return `HTTP/${req.httpVersion} is not supported`
  let hosts = 0
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++
  }
  if (hosts > 1) return 'more than one Host header'
  // The registry builds upload URLs from Host: it must be a host name or address, and a port.
  const host = req.headers.host
  if (host !== undefined && !HOST.test(host)) return 'Host is not a host name or address with an optional port'
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return 'Transfer-Encoding on HTTP/1.0'
  return formBodyProblem(req.headers, raw)
}

export function registryActionHook (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void {
  const framing = framingProblem(request.raw)
  if (framing !== null) {
    // Request smuggling material: refuse, and close, since the framing of what follows is in doubt.
    reply.header('connection', 'close')
    done(new BadRequestError(framing))
    return
  }
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
  fastify.addHook('onRequest', registryActionHook)
}, { name: 'berth-request-target', fastify: '5.x', dependencies: ['berth-request-state'], decorators: { request: ['registryAction'] } })
